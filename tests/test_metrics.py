"""dam_utils.metrics and dam_utils.paper: the feature/prototype measures on hand-built models."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from dam_utils import metrics, paper
from dam_utils.model import DAM, N_CLASSES, N_PIXELS, reference_energy_difference
from dam_utils.train import TrainConfig


def _model(xc: torch.Tensor, xi: torch.Tensor | None = None, n: int = 3, T: float = 10.0) -> DAM:
    xc = xc.float()
    if xi is None:
        xi = torch.zeros(xc.shape[0], N_PIXELS)
    return DAM(xi.float(), xc, n, T)


def _random_model(K: int = 50, n: int = 3, T: float = 60.0, seed: int = 0) -> DAM:
    gen = torch.Generator().manual_seed(seed)
    xi = (torch.rand(K, N_PIXELS, generator=gen) * 2 - 1) * 0.1
    xc = torch.rand(K, N_CLASSES, generator=gen) * 2 - 1
    return DAM(xi, xc, n, T)


def _images(B: int = 40, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(B, N_PIXELS, generator=gen) * 2 - 1


# --- class_specialisation ------------------------------------------------------------------------


def test_single_positive_class_weight_is_specialised() -> None:
    xc = -torch.ones(4, N_CLASSES)
    xc[0, 3] = 0.7  # exactly one positive: specialised, class 3
    xc[1, 3], xc[1, 5] = 0.7, 0.2  # two positive: a feature
    # memory 2: no positive class weight at all: not specialised
    xc[3, 8] = 0.01  # one (tiny) positive: specialised, class 8
    s = metrics.class_specialisation(_model(xc))
    assert s["K"] == 4
    assert s["fraction_single"] == pytest.approx(0.5)
    assert s["positive_counts"][:3] == [1, 2, 1] and sum(s["positive_counts"]) == 4
    assert len(s["positive_counts"]) == N_CLASSES + 1
    assert s["mean_positive"] == pytest.approx((1 + 2 + 0 + 1) / 4)
    assert s["per_class"][3] == 1 and s["per_class"][8] == 1 and sum(s["per_class"]) == 2


def test_margin_criterion() -> None:
    xc = torch.zeros(2, N_CLASSES)
    xc[0, 0], xc[0, 1] = 1.0, 0.4  # gap 0.6
    xc[1, 0], xc[1, 1] = 1.0, 0.8  # gap 0.2
    assert metrics.class_specialisation(_model(xc), margin=0.5)["fraction_margin"] == pytest.approx(0.5)
    assert metrics.class_specialisation(_model(xc), margin=0.1)["fraction_margin"] == pytest.approx(1.0)


def test_zero_class_weight_is_not_positive() -> None:
    xc = torch.zeros(3, N_CLASSES)
    assert metrics.class_specialisation(_model(xc))["fraction_single"] == 0.0
    assert metrics.class_specialisation(_model(xc))["positive_counts"][0] == 3


# --- contributors_per_decision -------------------------------------------------------------------


def test_contributions_sum_to_the_decision_margin_of_the_model() -> None:
    model = _random_model()
    x = _images()
    contrib, classes = metrics.decision_contributions(model, x)
    assert contrib.shape == (len(x), model.K)
    d = model.energy_difference(x).double()
    top2 = d.topk(2, dim=1)
    assert torch.equal(classes, top2.indices)
    margin = top2.values[:, 0] - top2.values[:, 1]
    torch.testing.assert_close(contrib.sum(1), margin, rtol=1e-4, atol=1e-6)
    assert (margin >= 0).all()


def test_equal_memories_give_K_contributors() -> None:
    K = 7
    xc = -torch.ones(K, N_CLASSES)
    xc[:, 4] = 1.0  # every memory identical: votes for class 4
    x = _images(5)
    pr = metrics.contributors_per_decision(_model(xc, n=2), x)
    torch.testing.assert_close(pr, torch.full((5,), float(K), dtype=torch.float64))
    active = metrics.contributors_per_decision(_model(xc, n=2), x, kind="active")
    assert torch.equal(active, torch.full((5,), float(K), dtype=torch.float64))


@pytest.mark.parametrize("n", [2, 30])
def test_one_dominant_memory_gives_one_contributor(n: int) -> None:
    K = 9
    xc = -torch.ones(K, N_CLASSES)  # equal class weights: no say in any margin
    xc[0, 2] = 1.0  # memory 0 alone separates class 2 from the rest
    pr = metrics.contributors_per_decision(_model(xc, n=n, T=30.0), _images(6))
    torch.testing.assert_close(pr, torch.ones(6, dtype=torch.float64))


def test_participation_ratio_is_scale_free_and_bounded() -> None:
    model = _random_model(K=40, n=20, T=30.0)
    x = _images(30)
    pr = metrics.contributors_per_decision(model, x, batch_size=7)  # uneven batches
    assert pr.shape == (30,) and torch.isfinite(pr).all()
    assert ((pr >= 1 - 1e-9) | (pr == 0)).all() and (pr <= model.K + 1e-9).all()
    active = metrics.contributors_per_decision(model, x, kind="active")
    assert (pr <= active + 1e-9).all()


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="kind"):
        metrics.contributors_per_decision(_random_model(), _images(2), kind="bogus")


def test_summarise() -> None:
    s = metrics.summarise(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert s == {"q25": 2.0, "median": 3.0, "q75": 4.0, "mean": 3.0}


# --- error_table ---------------------------------------------------------------------------------


def test_error_table_counts_the_errors_of_eq_1() -> None:
    """Labels are built from eq. (1) written out literally (model.reference_energy_difference, not the model's
    own path): 15 of 60 images get a wrong label, so the error must be exactly 25 %."""
    x = _images(60, seed=3)
    models = {30: _random_model(n=30, T=40.0, seed=5), 2: _random_model(n=2, seed=6), 7: _random_model(seed=7)}
    for n, model in models.items():
        y = reference_energy_difference(x.double(), model.xi.double(), model.xc.double(), model.n, model.T).argmax(1)
        y[45:] = (y[45:] + 1) % N_CLASSES
        row = metrics.error_table({n: model}, SimpleNamespace(x_test=x, y_test=y))[0]
        assert row["n"] == n and row["test_error"] == pytest.approx(25.0) and row["n_errors"] == 15
        ref = paper.TEST_ERROR.get(n)
        assert row["paper_test_error"] == ref
        assert row["difference"] == (None if ref is None else pytest.approx(25.0 - ref))
    order = metrics.error_table(models, SimpleNamespace(x_test=x, y_test=torch.zeros(60, dtype=torch.long)))
    assert [r["n"] for r in order] == [30, 2, 7]  # the order given


# --- tables --------------------------------------------------------------------------------------


def test_config_and_provenance_rows_and_markdown() -> None:
    cfgs = [TrainConfig.smoke(2), TrainConfig.smoke(30)]
    rows = metrics.config_rows(cfgs)
    assert [r["n"] for r in rows] == [2, 30] and rows[1]["T_i"] == cfgs[1].T_i
    assert metrics.config_rows([c.to_dict() for c in cfgs]) == rows
    entries = {
        2: {"epochs": 180, "wall_time_s": 7200.0, "sha256": "ab" * 32,
            "environment": {"device_name": "CPU x", "commit": "c" * 40, "dam_utils_dirty": False}},
        3: {"epochs": 2, "wall_time_s": 1.0, "environment": {"device": "cpu", "commit": None}},
    }
    prov = metrics.provenance_rows(entries)
    assert prov[0]["sha256"] == "ab" * 6 and prov[0]["commit"] == "c" * 12 and prov[0]["wall time (h)"] == 2.0
    assert prov[1]["sha256"] == "not saved" and prov[1]["commit"] == "none" and prov[1]["device"] == "cpu"
    table = metrics.markdown_table([{"a": 1.23456, "b": None, "c": "x|y"}], floatfmt=".2f")
    assert table.splitlines() == ["| a | b | c |", "| --- | --- | --- |", "| 1.23 | – | x\\|y |"]
    assert metrics.markdown_table([]) == ""


# --- paper.py ------------------------------------------------------------------------------------


def test_paper_tables_are_consistent_with_the_papers_text() -> None:
    """Properties the paper's text states about its own tables, so a mistyped number fails here."""
    assert paper.N_VALUES == tuple(paper.TEST_ERROR) == tuple(paper.BETA_SM) == tuple(paper.FIG5_TRANSFER_ERROR)
    lo, hi = paper.TEST_ERROR_RANGE  # "error_test = 1.4 - 1.8 %" for every n
    assert all(lo <= e <= hi for e in paper.TEST_ERROR.values())
    for g, row in paper.FIG5_TRANSFER_ERROR.items():
        assert tuple(row) == paper.N_VALUES
        assert 98.0 <= row[g] < 100.0  # footnote 3: the diagonal is ~99 %, not 100 %
    # "the model with n = 30 ... can still correctly classify 97 %" of the images made by n = 2 and 3
    small_to_30 = [paper.FIG5_TRANSFER_ERROR[g][30] for g in (2, 3)]
    assert 100.0 - sum(small_to_30) / 2 == pytest.approx(paper.FIG5_CORRECT_N30, abs=0.5)
    assert all({g, t} <= set(paper.N_VALUES) for g, t in paper.FIG6_MEAN_CONFIDENCE)
    # beta_sm = 3.2 comes from Z = 0.985 for outputs at their targets: e^b / (e^b + 9 e^-b)
    b = paper.BETA_SM_SINGLE
    assert math.exp(b) / (math.exp(b) + 9 * math.exp(-b)) == pytest.approx(paper.BETA_SM_SINGLE_Z, abs=2e-3)
    assert paper.paper_test_error(5) is None
    with pytest.raises(TypeError):
        paper.TEST_ERROR[2] = 0.0  # read-only


@pytest.mark.parametrize("n", paper.N_VALUES)
def test_book_hyperparameters_lie_in_the_published_ranges(n: int) -> None:
    cfg, r = TrainConfig.paper(n), paper.RANGES_2016

    def inside(value: float, key: str) -> bool:
        return r[key][0] <= value <= r[key][1]

    for key in ("K", "per_class", "p", "eps0", "f", "init_mean", "init_std", "ramp_epochs"):
        assert inside(getattr(cfg, key), key), key
    assert cfg.epochs == paper.EPOCHS_2016
    if n <= 3:
        assert inside(cfg.m, "m_small") and inside(cfg.T_i, "T_small_i") and inside(cfg.T_f, "T_small_f")
    else:
        assert inside(cfg.m, "m_large") and cfg.T_i == cfg.T_f and inside(cfg.T_f, "T_large")


def test_initial_specialisation_is_the_binomial_baseline() -> None:
    """Untrained class weights ~ N(-0.3, 0.3): P(xi > 0) = P(Z > 1) = 0.159, so about
    10 p (1 - p)^9 = 33.5 % of the memories have exactly one positive class weight."""
    s = metrics.initial_specialisation(TrainConfig.cpu(2))
    p = 0.158655
    assert s["K"] == 2000
    assert s["fraction_single"] == pytest.approx(10 * p * (1 - p) ** 9, abs=0.04)
    assert s["mean_positive"] == pytest.approx(10 * p, abs=0.1)
    assert s == metrics.initial_specialisation(TrainConfig.cpu(30))  # same seed, same initial weights


def test_html_table_escapes_and_formats() -> None:
    rows = [{"n": 2, "err <%>": 1.23456, "x": None, "s": "a|b"}]
    out = metrics.html_table(rows, floatfmt=".2f", caption="T")
    assert out.startswith('<table class="dam-table">') and out.endswith("</tbody></table>")
    assert "<caption>T</caption>" in out and "<th>err &lt;%&gt;</th>" in out
    assert "<td>2</td><td>1.23</td><td>–</td><td>a|b</td>" in out
    assert metrics.html_table([]) == ""
