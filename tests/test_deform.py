"""dam_utils.deform and dam_utils.sensitivity: decision-boundary deformations of section 4 (crossing,
bisection, trace), the step-size study, and the attack configurations."""

from __future__ import annotations

import pytest
import torch

from dam_utils import deform as dfm
from dam_utils.artifacts import ArtifactError, load_book_model
from dam_utils.descent import AT_CROSSING, MAX_STEPS
from dam_utils.model import DAM
from dam_utils.objectives import Classifier, FunctionClassifier, log_objective
from dam_utils.params import ParameterError
from dam_utils.rubbish import RubbishConfig, generate_rubbish
from dam_utils.sensitivity import step_size_sensitivity

# many tiny tensor ops: one intra-op thread (tests/conftest.py); small_model comes from there too
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def deformed(small_model: DAM, mnist) -> dfm.DeformResult:
    cfg = dfm.DeformConfig(eps=0.15, max_steps=200, patience=20)
    return dfm.deform(small_model, mnist.x_test[:24], 3, cfg, trace=3, snapshot_every=5)


def test_deform_boundary_image_lies_on_the_boundary(small_model: DAM, deformed: dfm.DeformResult) -> None:
    res, cfg = deformed, deformed.config
    c = res.crossed
    assert c.sum() >= 22, res.summary()
    D = small_model.energy_difference(res.boundary[c])
    r = torch.arange(int(c.sum()))
    dt, ds = D[r, res.top[c]], D[r, res.second[c]]
    tol = cfg.boundary_atol + cfg.boundary_rtol * torch.maximum(dt.abs(), ds.abs())
    assert torch.all((dt - ds).abs() <= tol + 1e-6)
    torch.testing.assert_close(res.boundary_gap[c], dt - ds, rtol=1e-4, atol=1e-5)
    # C^top = C^second there too (the stable objectives, no saturation at this scale)
    torch.testing.assert_close(log_objective(D, res.top[c], 3), log_objective(D, res.second[c], 3),
                               rtol=1e-3, atol=1e-3)
    # the boundary lies between the clean image and the behind image, at most eps before the latter
    assert torch.all(res.boundary_distance()[c] <= res.behind_distance()[c] + 1e-4)
    assert torch.all((res.behind[c] - res.boundary[c]).norm(dim=1) <= cfg.eps + 1e-4)


def test_deform_behind_image_is_the_second_choice(small_model: DAM, deformed: dfm.DeformResult) -> None:
    res = deformed
    c = res.crossed
    D = small_model.energy_difference(res.behind[c])
    r = torch.arange(int(c.sum()))
    assert torch.all(D[r, res.second[c]] > D[r, res.top[c]])  # past the top/second boundary: always
    assert torch.equal(D.argmax(1), res.behind_pred[c])
    assert res.behind_is_second[c].float().mean() >= 0.9  # a third class can win only rarely
    assert torch.equal(res.top, small_model.predict(res.clean))
    assert torch.all(res.cross_step[c] >= 1) and torch.all(res.cross_step[~c] == -1)


def test_deform_final_images_trace_and_box(small_model: DAM, deformed: dfm.DeformResult) -> None:
    res = deformed
    assert res.final is not None and res.final.shape == (24, 784)
    for t in (res.boundary, res.behind, res.final):
        assert t.min() >= -1 and t.max() <= 1
    c = res.converged
    assert c.sum() >= 6, res.summary()  # the rest hit max_steps = 200 (status 3), never silently
    assert torch.all(res.status[res.crossed & ~c] == MAX_STEPS)
    assert torch.all(small_model.predict(res.final[c]) == res.second[c])
    assert torch.all(res.final_log_objective[c] < log_objective(
        small_model.energy_difference(res.boundary[c]), res.second[c], 3).double())
    tr = res.trace
    assert tr is not None and tr.log_c_top.shape[0] == 3 and tr.snapshots is not None
    for j in range(3):
        second = tr.log_c_second[j][~tr.log_c_second[j].isnan()]
        top = tr.log_c_top[j][~tr.log_c_top[j].isnan()]
        assert second[-1] < second[0] and top[-1] > top[0]  # Fig. 4, top panel
        k = int(res.cross_step[j])  # the crossing of the two curves
        assert top[k - 1] < second[k - 1] and top[k] > second[k]
        assert tr.gap[j][k] < 0 < tr.gap[j][k - 1]
    torch.testing.assert_close(tr.snapshots[:, 0], res.clean[:3])


def test_deform_stops_at_the_crossing_when_asked(small_model: DAM, mnist, deformed: dfm.DeformResult) -> None:
    cfg = dfm.DeformConfig(eps=0.15, max_steps=200, to_convergence=False, batch_size=10)
    res = dfm.deform(small_model, mnist.x_test[:24], 3, cfg)
    assert res.final is None
    c = res.crossed & deformed.crossed
    assert torch.equal(res.cross_step[c], deformed.cross_step[c])  # chunking does not change anything
    torch.testing.assert_close(res.behind[c], deformed.behind[c])
    assert torch.all(res.steps[res.crossed] == res.cross_step[res.crossed])
    assert torch.all(res.status[res.crossed] == AT_CROSSING)


def test_deform_reports_failures(small_model: DAM, mnist) -> None:
    res = dfm.deform(small_model, mnist.x_test[:10], 3, dfm.DeformConfig(eps=0.01, max_steps=3))
    assert res.failed.all() and res.summary()["failed"] == 10
    assert torch.all(res.cross_step == -1) and torch.all(res.status == MAX_STEPS)
    assert res.boundary_distance().isnan().all()


def test_generic_classifier_wrapper(mnist) -> None:
    """A plain callable returning D (here a linear layer) is attacked like a DAM."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(784, 10, generator=g) * 0.01
    clf = FunctionClassifier(lambda v: v @ W)
    assert isinstance(clf, Classifier)
    res = dfm.deform(clf, mnist.x_test[:8], 2, dfm.DeformConfig(eps=0.5, max_steps=300, to_convergence=False))
    assert res.crossed.all()
    assert torch.all(res.boundary_gap.abs() <= 1e-5 + 1e-4 * res.boundary_scale)
    rub = generate_rubbish(lambda v: v @ W, 2, 1, RubbishConfig.smoke())
    assert rub.images.shape == (10, 784)


def test_step_size_sensitivity_rows(small_model: DAM, mnist) -> None:
    cfg = dfm.DeformConfig(max_steps=200)
    rows = step_size_sensitivity(small_model, mnist.x_test[:8], 3, [0.3, 0.15], cfg,
                                   labels=mnist.y_test[:8], transfer={"self": small_model})
    assert [r["eps"] for r in rows] == [0.15, 0.3]
    assert rows[0]["median_boundary_shift"] == 0.0 and rows[0]["self_agree_%"] == 100.0
    assert rows[1]["median_boundary_shift"] < 0.1 * rows[0]["median_boundary_dist"]
    assert all(r["crossed"] + r["failed"] == 8 for r in rows)


# --- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,name,value",
    [
        (RubbishConfig, "eps", -0.1),
        (RubbishConfig, "eps", 0.0),
        (RubbishConfig, "max_steps", 0),
        (RubbishConfig, "noise_std", "0.3"),
        (RubbishConfig, "clip", 1),
        (RubbishConfig, "tol", 1.5),
        (dfm.DeformConfig, "eps", float("nan")),
        (dfm.DeformConfig, "batch_size", 2.5),
        (dfm.DeformConfig, "to_convergence", "yes"),
        (dfm.DeformConfig, "bisect_steps", -1),
    ],
)
def test_bad_config_values_raise_parameter_error(cls, name: str, value) -> None:
    with pytest.raises(ParameterError, match=f"'{name}'"):
        cls(**{name: value})


def test_presets_and_other_parameters(small_model: DAM, mnist) -> None:
    for cls in (RubbishConfig, dfm.DeformConfig):
        for profile in ("paper", "cpu", "smoke"):
            cfg = cls.preset(profile)
            assert isinstance(cfg, cls) and cfg.to_dict()["eps"] == cfg.eps
        assert cls.smoke().max_steps < cls.cpu().max_steps <= cls.paper().max_steps
        with pytest.raises(ParameterError, match="'profile'"):
            cls.preset("gpu")
    with pytest.raises(ParameterError, match="'m'"):
        dfm.deform(small_model, mnist.x_test[:2], 0)
    with pytest.raises(ParameterError, match="'n_per_class'"):
        generate_rubbish(small_model, 3, 0)
    with pytest.raises(ParameterError, match="'trace'"):
        dfm.deform(small_model, mnist.x_test[:2], 3, trace=[5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deform_on_cuda_matches_cpu(small_model: DAM, mnist) -> None:
    cfg = dfm.DeformConfig(eps=0.1, max_steps=300, to_convergence=False)
    x = mnist.x_test[:20]
    cpu = dfm.deform(small_model, x, 3, cfg)
    gpu = dfm.deform(small_model.to("cuda"), x.cuda(), 3, cfg)
    assert (cpu.cross_step == gpu.cross_step).float().mean() >= 0.9


def test_book_model_n30_boundary(mnist) -> None:
    """On the committed DAM_30 (if present): crossing images sit on the boundary, behind images are the
    second choice; no image fails."""
    try:
        model, entry = load_book_model(30)
    except (ArtifactError, FileNotFoundError) as exc:
        pytest.skip(f"book model n=30 not available ({exc}); commit artifacts/ to run this test")
    m = int(entry["config"]["m"])
    res = dfm.deform(model, mnist.x_test[:20], m, dfm.DeformConfig(to_convergence=False, max_steps=1000))
    assert res.crossed.all(), res.summary()
    assert (res.relative_boundary_gap() <= 1e-4 + 1e-5 / res.boundary_scale.clamp_min(1e-30)).all()
    assert res.behind_is_second.float().mean() >= 0.9
