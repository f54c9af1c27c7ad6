"""Chapter 7's audit: the adapter to the attack libraries, the invariants every library attack must satisfy, the
capture of the libraries' warnings, the verdict rules, and the cache (a recomputed sample must agree)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dam_utils import audit as audit_module
from dam_utils import claims
from dam_utils.audit import (
    AUDITED,
    AuditConfig,
    audited_models,
    chapter_results,
    load_audit,
    recheck_audit,
    zero_gradient_share,
)
from dam_utils.audit_attacks import (
    BOUNDED,
    MINIMAL,
    STANDARD,
    AttackBudget,
    AttackInvariantError,
    autoattack_standard,
    checked_run,
    run_attack,
)
from dam_utils.audit_model import AttackView, to_images, to_visible
from dam_utils.audit_tables import CHECKS, checklist, verdicts
from dam_utils.book_models import obtain_models
from dam_utils.data import load_mnist
from dam_utils.params import ParameterError

TINY = AttackBudget(pgd_steps=3, apgd_iter=3, long_iter=3, long_restarts=1, fab_iter=3, square_queries=5,
                    deepfool_steps=3, hsj_steps=1, batch_size=8)


@pytest.fixture(scope="module")
def data():
    return load_mnist()


@pytest.fixture(scope="module")
def dams(data):
    return obtain_models([2, 30], "cpu", data).models


@pytest.fixture(scope="module")
def batch(data):
    return to_images(data.x_test[:6]), data.y_test[:6]


class Saturated:
    """A book model with its outputs D multiplied by ``scale``: same labels, ``tanh(D)`` exactly +-1 in float32."""

    def __init__(self, model, scale: float) -> None:
        self.model, self.scale, self.device = model, scale, model.device

    def energy_difference(self, v: torch.Tensor) -> torch.Tensor:
        return self.scale * self.model.energy_difference(v)


def test_view_maps_unit_images_to_the_models_visible_states(dams, batch) -> None:
    x, _ = batch
    v = to_visible(x)
    assert v.shape == (6, 784) and float(v.min()) >= -1 and float(v.max()) <= 1
    torch.testing.assert_close(to_images(v), x)
    m = dams[2]
    torch.testing.assert_close(AttackView(m)(x), m.energy_difference(v))
    torch.testing.assert_close(AttackView(m, "tanh")(x.reshape(6, 784)), torch.tanh(m.energy_difference(v)))


def test_view_rejects_what_is_not_a_book_classifier(dams) -> None:
    with pytest.raises(ValueError, match="output"):
        AttackView(dams[2], "softmax")
    with pytest.raises(TypeError, match="energy_difference"):
        AttackView(torch.nn.Linear(784, 10))


@pytest.mark.parametrize("name", BOUNDED + MINIMAL)
def test_every_attack_keeps_its_invariants(name, dams, batch) -> None:
    x, y = batch
    view = AttackView(dams[30])
    norm = "L2" if name in MINIMAL else "Linf"
    r = run_attack(name, view, x, y, norm, None if name in MINIMAL else 0.1, TINY)
    assert r.adv.shape == x.shape and float(r.adv.min()) >= 0 and float(r.adv.max()) <= 1
    with torch.no_grad():
        clean_wrong = view(x).argmax(1) != y
        adv_wrong = view(r.adv).argmax(1) != y
    assert bool((r.fooled == (adv_wrong | clean_wrong)).all())  # scored by the model, not by the library
    if name in BOUNDED:
        assert float(r.distance.max()) <= 0.1 * (1 + 1e-4) + 1e-6
        assert 0.0 <= r.robust_accuracy() <= 100.0 * float((~clean_wrong).float().mean()) + 1e-9
    else:
        assert bool(torch.isinf(r.distance[~r.fooled]).all()) and bool(torch.isfinite(r.distance[r.fooled]).all())


def test_checked_run_refuses_a_cheating_attack(dams, batch) -> None:
    x, y = batch
    view = AttackView(dams[2])
    with pytest.raises(AttackInvariantError, match="outside"):
        checked_run("fake", view, x, y, x + 2.0, "Linf", None, 0.0, {})
    with pytest.raises(AttackInvariantError, match="eps"):
        checked_run("fake", view, x, y, (x + 0.2).clamp(0, 1), "Linf", 0.1, 0.0, {})
    with pytest.raises(AttackInvariantError, match="non-finite"):
        checked_run("fake", view, x, y, x * float("nan"), "L2", 1.0, 0.0, {})
    r = checked_run("identity", view, x, y, x.clone(), "L2", 1.0, 0.0, {})
    with torch.no_grad():
        assert bool((r.fooled == (view(x).argmax(1) != y)).all())


@pytest.mark.parametrize(("kw", "match"), [
    ({"name": "nope"}, "unknown attack"), ({"norm": "L1"}, "norm"), ({"name": "deepfool", "norm": "Linf"}, "L2"),
    ({"eps": None}, "eps"), ({"eps": -0.1}, "eps")])
def test_bad_attack_arguments_fail_before_any_work(kw, match, dams, batch) -> None:
    args = {"name": "pgd", "norm": "Linf", "eps": 0.1, **kw}
    with pytest.raises(ValueError, match=match):
        run_attack(args["name"], AttackView(dams[2]), *batch, norm=args["norm"], eps=args["eps"], budget=TINY)


def test_autoattack_sequence_records_the_first_attack_that_broke_each_image(dams, batch) -> None:
    x, y = batch
    view = AttackView(dams[2])
    r, broken = autoattack_standard(view, x, y, "L2", 3.0, TINY)
    with torch.no_grad():
        clean_wrong = view(x).argmax(1) != y
    assert bool(((broken == -1) == clean_wrong).all())
    assert bool((r.fooled == (broken < len(STANDARD))).all())
    with pytest.raises(ValueError, match="leading part"):
        autoattack_standard(view, x, y, "L2", 1.0, TINY, attacks=("square",))


def test_saturated_tanh_zeroes_the_gradient_and_autoattack_says_so(dams, batch) -> None:
    x, y = batch
    model = Saturated(dams[2], 1e4)
    assert zero_gradient_share(AttackView(model, "tanh"), x, y) == 100.0
    assert zero_gradient_share(AttackView(model), x, y) == 100.0  # cross-entropy saturates too at this scale
    assert zero_gradient_share(AttackView(dams[2]), x, y) == 0.0  # the book's model itself does not
    # AutoAttack checks for zero gradients on its DLR losses only (APGD-CE on tanh would pass unremarked, which is
    # why the audit counts them itself with zero_gradient_share)
    r = run_attack("apgd-t", AttackView(model, "tanh"), x, y, "Linf", 0.1, TINY)
    assert any("zero gradient" in w for w in r.warnings), r.warnings  # captured, not silenced


def test_audit_config_rejects_bad_values_by_name() -> None:
    with pytest.raises(ParameterError, match="n_check"):
        AuditConfig(n_check=0)
    with pytest.raises(ParameterError, match="curve_attacks"):
        AuditConfig(curve_attacks=5)
    assert AuditConfig.smoke().curve_sequence == STANDARD[:2]
    assert AuditConfig.paper().curve_sequence == STANDARD


def test_verdict_rules() -> None:
    v = claims.AUDIT_VERDICTS
    big, small = claims.AUDIT_WHITEBOX_MARGIN_PP + 1, claims.AUDIT_WHITEBOX_MARGIN_PP - 1
    assert claims.audit_verdict(True, [big, big], [0, 0]) == v[2]
    assert claims.audit_verdict(False, [big, big], [50, 50]) == v[0]
    assert claims.audit_verdict(False, [big, small], [0, claims.AUDIT_TRANSFER_GAP_PP + 1]) == v[1]
    assert claims.audit_verdict(False, [small, small], [0, 0]) == v[3]
    assert claims.large_n_whitebox_robust({2: v[3], 30: v[0]}).state == "holds"
    assert claims.large_n_whitebox_robust({20: v[1], 30: v[0]}).state == "does not hold"
    assert claims.large_n_whitebox_robust({2: v[0]}).state == claims.NOT_COMPUTED


def test_cached_audit_tables_are_complete() -> None:
    res = load_audit()
    assert res.keys == list(AUDITED)
    for k in res.keys:
        rows = checklist(res, k)
        assert [r["check"] for r in rows] == [c for c in CHECKS for _ in range(2)]
    assert {v["verdict"] for v in verdicts(res).values()} <= set(claims.AUDIT_VERDICTS)
    assert res.robust("fgsm").shape == res.robust("autoattack").shape
    # robust accuracy can only fall as eps grows (each image is attacked afresh; a rise would be a bug or noise
    # beyond one image in a hundred)
    assert (np.diff(res.robust("autoattack"), axis=-1) <= 1.0).all()


@pytest.mark.slow
def test_recomputed_sample_of_every_cached_table_agrees(data) -> None:
    res = load_audit()
    models = audited_models("cpu", data)
    out = recheck_audit(res, models, data, n_sample=6)
    assert set(out) == {"fgsm", "pgd", "autoattack", "checklist autoattack"} | {f"distance {a}" for a in MINIMAL}
    assert out["fgsm"]["disagree"] == 0 and out["distance deepfool"]["disagree"] == 0, out
    for table, t in out.items():  # random starts depend on the batch: a few images near the boundary may flip
        assert t["disagree"] <= 0.15 * t["compared"], (table, t)


def test_chapter_loads_the_cpu_audit_and_refuses_a_seed_it_would_ignore(data) -> None:
    res, source = chapter_results("cpu", False, data)
    assert source.startswith("loaded")
    assert res.config["audit"] == AuditConfig.cpu().to_dict()
    with pytest.raises(ValueError, match="seed"):
        chapter_results("cpu", False, data, seed=3)


@pytest.mark.parametrize(("argv", "name"), [(["--n", "7", "--attack", "pgd", "--eps", "0.1"], "n"),
                                            (["--n", "30", "--attack", "pgd", "--eps", "-0.1"], "eps"),
                                            (["--n", "30", "--attack", "apgd-t"], "eps")])
def test_cli_cell_rejects_bad_arguments_before_any_work(argv, name, monkeypatch) -> None:
    def no_work():
        raise AssertionError("data was loaded before the arguments were checked")

    monkeypatch.setattr(audit_module, "load_mnist", no_work)
    with pytest.raises(ParameterError, match=f"'{name}'"):
        audit_module.main(argv)
