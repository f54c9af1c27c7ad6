"""dam_utils.hinthorn: appendix B's analyses on grids built by hand: final values, the report's layout, the
convergence and reversal rules, instability rates, the claims' verdicts and the bridge table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dam_utils import hinthorn, paper
from dam_utils.hard_negatives import ARMS, SDConfig
from dam_utils.params import ParameterError


def _grid(sd_gain: float, seeds: int = 4, E: int = 3) -> dict[str, np.ndarray]:
    """A grid where every run's accuracy rises to 0.5 (control) or 0.5 + sd_gain (SD arms), plus seed noise."""
    shape = (seeds, 3, 2, len(ARMS))
    rng = np.random.default_rng(0)
    g = {k: np.full((*shape, 2 * E), np.nan) for k in ("val_adv", "val_orig", "train_adv", "train_orig")}
    for a in range(len(ARMS)):
        n = 2 * E if a == 0 else E
        top = 0.5 + (0 if a == 0 else sd_gain)
        noise = rng.normal(0, 0.01, shape[:3])[..., None]
        for k in g:
            g[k][:, :, :, a, :n] = np.minimum(np.linspace(0.2, top, n) + noise, 1.0)
    g["val"] = np.zeros((seeds, 3, 20), bool)
    g["val"][:, :, :10] = True
    g["selected"] = np.zeros((*shape, 200), np.int64)
    g["steps"] = np.full(shape, 10)
    g["selected"][..., 0] = 10  # unit 0 chosen at every step, unit 1 never
    g["test"] = np.full(shape, 0.98)
    return g


def test_final_values_take_each_runs_last_epoch() -> None:
    g = _grid(0.2)
    final = hinthorn.final_values(g)
    assert final.shape == (4, 3, 2, len(ARMS))
    assert np.allclose(final[..., 0], g["val_adv"][..., 0, -1]) and np.allclose(final[..., 1], g["val_adv"][..., 1, 2])


def test_report_rows_put_ours_beside_the_report() -> None:
    rows = hinthorn.report_rows(_grid(0.2), "orig")
    assert [r[""] for r in rows[:3]] == ["report", "ours, seed 0 (k/10)", "ours, mean ± sd (4 seeds)"]
    assert rows[0]["SD_0.5^c"] == f"{paper.HINTHORN_TABLES['orig'][0.001][2]:.4f}"
    assert rows[1]["C^c"] == rows[1]["C^f"]  # one control under both layers
    with pytest.raises(ParameterError, match="'grouping'"):
        hinthorn.report_rows(_grid(0.2), "source")


def test_convergence_and_reversal_rules() -> None:
    assert hinthorn.convergence_epochs(np.array([0.1, 0.5, 0.6, 0.6]), 10) == 2  # within 1/10 from epoch 2 on
    assert hinthorn.convergence_epochs(np.array([0.6, 0.6]), 10) == 1
    assert hinthorn.convergence_epochs(np.array([0.6, 0.1, 0.6]), 10) == 3
    r = hinthorn.retention(np.array([0.99, 1.0, 0.98, 0.985]))
    assert r["final"] == pytest.approx(98.5) and r["max_drop_pp"] == pytest.approx(2.0) and r["reversal"] == 1.0
    assert hinthorn.retention(np.array([0.9, 0.995, 1.0]))["reversal"] == 0.0


def test_verdicts_follow_the_grid() -> None:
    cfg = SDConfig(epochs=3, n_seeds=4)
    better = {v.claim: v.state for v in hinthorn.claim_verdicts(_grid(0.2), cfg)}
    same = {v.claim: v.state for v in hinthorn.claim_verdicts(_grid(0.0), cfg)}
    key = "SD_0.2^c beats the control at η = 0.001 (both)"
    assert better[key] == "holds" and same[key] == "does not hold"
    rows, verdicts = hinthorn.speed_and_retention(_grid(0.2), cfg)
    assert [r["arm"] for r in rows] == [a[0] for a in ARMS] and len(verdicts) == 2
    rates = hinthorn.instability(_grid(0.2))
    assert set(rates) == {(a[1], a[2]) for a in ARMS[1:]}
    assert rates[("fc", 0.2)].shape == (4 * 3 * 2, 200) and rates[("fc", 0.2)][:, 0].min() == 1.0
    assert hinthorn.instability_verdict(rates).state == "holds"


def test_bridge_counts_right_and_target() -> None:
    x = torch.zeros(4, 784)
    label, target = np.array([1, 2, 3, 4]), np.array([5, 5, 5, 5])
    always5 = lambda v: torch.full((len(v),), 5)  # noqa: E731
    rows = hinthorn.classify_pairs({"five": always5}, x, x, label, target)
    assert rows == [{"model": "five", "originals right (%)": 0.0, "adversarials right (%)": 0.0,
                     "CNN's target taken (%)": 100.0}]


def test_blame_and_bridge_verdicts() -> None:
    def blame(fc: float, conv: float) -> list[dict[str, object]]:
        return [{"layer": layer, "volatility": kind, "top 20 % share": share}
                for layer, share in (("fc", fc), ("conv2", conv)) for kind in ("difference", "norms")]

    assert hinthorn.blame_verdict(blame(0.6, 0.4)).state == "holds"
    assert hinthorn.blame_verdict(blame(0.3, 0.2)).state == "does not hold"  # barely above an even spread
    assert hinthorn.blame_verdict(blame(0.5, 0.7)).state == "does not hold"  # conv2 more concentrated
    rows = [{"model": "base CNN", "adversarials right (%)": 0.0},
            {"model": "DAM, n = 2", "adversarials right (%)": 92.0},
            {"model": "DAM, n = 30", "adversarials right (%)": 79.0}]
    v = hinthorn.bridge_verdict(rows)
    assert v.ours == 79.0 and v.state == "does not hold"  # the attacked CNN itself does not count
    assert hinthorn.bridge_verdict(rows[:2]).state == "holds"


def test_denominators_cells_gaps_and_rows() -> None:
    flat = {g: [v for row in paper.HINTHORN_TABLES[g].values() for v in row] for g in paper.HINTHORN_TABLES}
    assert hinthorn.implied_denominator(flat["both"]) == 82  # 38/82 ... 49/82 (reading notes, A.3)
    assert hinthorn.implied_denominator(flat["orig"]) == 10
    assert hinthorn.implied_denominator(flat["adv"]) == 82  # not 10: the duplication the appendix flags
    assert hinthorn.implied_denominator([1 / 3, 0.5]) == 6 and hinthorn.implied_denominator([0.12345], 50) is None
    g = _grid(0.2)
    cells = hinthorn.cell_means(g)
    assert len(cells) == 48 and [c["report"] for c in cells[:8]] == list(paper.HINTHORN_TABLES["both"][0.001])
    assert cells[0]["ours"] == pytest.approx(hinthorn.final_values(g)[:, 0, 0, 0].mean())
    far = hinthorn.arm_gaps(g)
    assert far["gap"] == pytest.approx(20.0, abs=3.0) and far["other_gap"] == pytest.approx(20.0, abs=3.0)
    rows = hinthorn.verdict_rows(hinthorn.claim_verdicts(g, SDConfig(epochs=3, n_seeds=4)))
    assert rows[0]["report"] == "12.20 pp" and rows[0]["verdict"] == "holds"
