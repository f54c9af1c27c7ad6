"""Appendix B: Hinthorn's report (seed 003) end to end. Its three objects (the base CNN, the 208 L-BFGS pairs and
the selective-dropout grid) loaded from their caches or computed here, and the analyses the appendix shows: the
tables in the report's layout, convergence speed (E6), retention of the originals (E7), instability (E8), the
concentration of blame (E4), the report's claims as verdicts, and the bridge to the main paper (the pairs shown
to every DAM). Every threshold of a verdict is a constant here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from . import paper
from .claims import Verdict
from .cnn import BaseCNN, CNNConfig, committed_cnn, load_cnn, train_cnn
from .data import Dataset
from .hard_negatives import ARMS, ETAS, GROUPINGS, WIDTH, SDConfig, load_hard_negatives, train_grid
from .lbfgs import LBFGSConfig
from .lbfgs_pairs import PairsConfig, adversarial_pairs, load_pairs
from .params import check_choice
from .selective_dropout import blame_concentration, volatility

__all__ = [
    "COLUMN_ARM",
    "arm_gaps",
    "blame_table",
    "blame_verdict",
    "bridge_verdict",
    "cell_means",
    "claim_verdicts",
    "classify_pairs",
    "convergence_epochs",
    "final_values",
    "implied_denominator",
    "instability",
    "instability_verdict",
    "mean_volatility",
    "obtain_cnn",
    "obtain_grid",
    "obtain_pairs",
    "report_rows",
    "retention",
    "speed_and_retention",
    "verdict_rows",
]

#: Arm index (into :data:`~dam_utils.hard_negatives.ARMS`) of each column of the report's tables.
COLUMN_ARM = dict(zip(paper.HINTHORN_COLUMNS, (0, 1, 2, 3, 0, 4, 5, 6), strict=True))
#: A reversal of accuracy on the originals (E7): a drop of at least this many points below the running maximum.
REVERSAL_PP = 1.0
#: "Beats the control": the mean paired difference over seeds exceeds this many standard errors.
BEATS_SE = 2.0
#: "Blame is concentrated": the top 20 % of the fc units carry at least this percentage of the change.
BLAME_TOP20_MIN_PCT = 40.0
#: "Hardly transfer": every DAM classifies at least this percentage of the CNN's adversarials correctly.
BRIDGE_RIGHT_MIN = 80.0


def obtain_cnn(profile: str, recompute: bool, data: Dataset, device: Any = "cpu"
               ) -> tuple[BaseCNN, dict[str, Any], str]:
    """The base CNN: the committed one of ``profile``, or trained here (``recompute`` or the smoke profile).
    Returns the network, its record (manifest entry, or config / errors / wall time) and where it came from."""
    if recompute or profile == "smoke":
        cfg = CNNConfig.preset(profile)
        model, history, wall = train_cnn(cfg, data, device, progress=False)
        x_test = (data.x_test + 1) / 2
        rec = {"config": cfg.to_dict(), "epochs": len(history), "wall_time_s": round(wall, 1),
               "test_error": model.error_rate(x_test.to(device), data.y_test)}
        return model.cpu(), rec, "trained here"
    name = committed_cnn(profile)
    if name is None:
        raise FileNotFoundError(f"no committed base CNN for profile {profile!r}: run `python -m dam_utils.cnn "
                                f"--profile {profile}`, or the appendix with recompute=True")
    model, entry = load_cnn(name)
    return model, entry, "committed"


def obtain_pairs(model: BaseCNN, profile: str, trained_here: bool, data: Dataset) -> tuple[dict[str, np.ndarray], str]:
    """The L-BFGS pairs of ``model``: the cache when ``model`` is the committed CNN, computed here otherwise."""
    if trained_here:
        return adversarial_pairs(model, data, PairsConfig.preset(profile), LBFGSConfig.preset(profile),
                                 progress=False), "computed here"
    pairs, _ = load_pairs()
    return pairs, "loaded from artifacts/results/"


def obtain_grid(model: BaseCNN, pairs: dict[str, np.ndarray], profile: str, trained_here: bool, workers: int = 1
                ) -> tuple[dict[str, np.ndarray], SDConfig, str]:
    """The selective-dropout grid (:func:`~dam_utils.hard_negatives.train_grid`): cached, or trained here."""
    if trained_here:
        cfg = SDConfig.preset(profile)
        return train_grid(model, pairs, cfg, workers, progress=False), cfg, "computed here"
    grid, doc = load_hard_negatives()
    return grid, SDConfig(**doc["config"]["grid"]), "loaded from artifacts/results/"


def final_values(grid: Mapping[str, np.ndarray], metric: str = "val_adv") -> np.ndarray:
    """The last recorded epoch of every run (seed, grouping, eta, arm): the control after its doubled epochs."""
    curves = grid[metric]  # (S, G, H, A, epochs), NaN after a run's end
    last = (~np.isnan(curves)).sum(-1) - 1
    return np.take_along_axis(curves, last[..., None], -1)[..., 0]


def report_rows(grid: Mapping[str, np.ndarray], grouping: str) -> list[dict[str, str]]:
    """The report's table for ``grouping`` (Table 1, 2 or 3) with ours beside it: per eta the report's row, our
    first seed (one run, as the report) and our mean ± sd over the seeds."""
    check_choice("grouping", grouping, GROUPINGS)
    final = final_values(grid)[:, GROUPINGS.index(grouping)]  # (S, H, A)
    n_val = int(grid["val"][0, GROUPINGS.index(grouping)].sum())
    rows = []
    for h, eta in enumerate(ETAS):
        ref = paper.HINTHORN_TABLES[grouping][eta]
        rows.append({"η": f"{eta:g}", "": "report", **{c: f"{v:.4f}" for c, v in zip(COLUMN_ARM, ref, strict=True)}})
        rows.append({"η": f"{eta:g}", "": f"ours, seed 0 (k/{n_val})",
                     **{c: f"{final[0, h, a]:.4f}" for c, a in COLUMN_ARM.items()}})
        rows.append({"η": f"{eta:g}", "": f"ours, mean ± sd ({len(final)} seeds)",
                     **{c: f"{final[:, h, a].mean():.3f} ± {final[:, h, a].std(ddof=1) if len(final) > 1 else 0:.3f}"
                        for c, a in COLUMN_ARM.items()}})
    return rows


def cell_means(grid: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Every cell of Tables 1-3: grouping, eta, column, our mean over the seeds and the report's value (both as
    accuracies in [0, 1]), in the report's order."""
    final = final_values(grid)  # (S, G, H, A)
    return [{"grouping": grouping, "eta": eta, "column": col, "ours": float(final[:, g, h, a].mean()), "report": ref}
            for g, grouping in enumerate(GROUPINGS) for h, eta in enumerate(ETAS)
            for (col, a), ref in zip(COLUMN_ARM.items(), paper.HINTHORN_TABLES[grouping][eta], strict=True)]


def implied_denominator(values: Sequence[float], max_k: int = 1000, tol: float = 5e-4) -> int | None:
    """The smallest k such that every value (printed to 4 decimals) is a multiple of 1/k: the number of withheld
    images a table of accuracies implies. None if no k up to ``max_k`` fits."""
    return next((k for k in range(1, max_k + 1) if all(abs(v * k - round(v * k)) <= tol * k for v in values)), None)


def arm_gaps(grid: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The arm farthest from the control (the largest |mean paired difference| over cells), its gap and cell, the
    largest gap of every other arm, and the control's seed-to-seed sd (mean over cells); gaps and sd in points."""
    final = final_values(grid)
    gaps = (final[..., 1:] - final[..., :1]).mean(0)  # (grouping, eta, SD arm)
    g, h, a = np.unravel_index(np.abs(gaps).argmax(), gaps.shape)
    sd = 100 * float(final[..., 0].std(0, ddof=1).mean()) if len(final) > 1 else float("nan")
    return {"arm": ARMS[a + 1][0], "gap": 100 * float(gaps[g, h, a]), "cell": f"{GROUPINGS[g]}, η = {ETAS[h]:g}",
            "other_gap": 100 * float(np.abs(np.delete(gaps, a, axis=2)).max()), "control_sd": sd}


def verdict_rows(verdicts: Sequence[Verdict]) -> list[dict[str, str]]:
    """The verdicts as table rows: claim, the report's value, ours, the rule and the verdict."""
    def shown(value: Any, unit: str) -> str:
        if value is None:
            return "–"
        return (f"{value:.2f}" if isinstance(value, float) else str(value)) + (f" {unit}" if unit else "")

    return [{"claim": v.claim, "report": shown(v.paper, v.unit if isinstance(v.paper, float) else ""),
             "ours": shown(v.ours, v.unit), "rule": v.tolerance, "verdict": v.state} for v in verdicts]


def convergence_epochs(curve: np.ndarray, n_val: int) -> int:
    """E6: the first epoch (1-based) after which the accuracy ``curve`` (epochs,) stays within one validation
    example (1 / ``n_val``) of its final value."""
    within = np.abs(curve - curve[-1]) <= 1.0 / n_val + 1e-12
    bad = np.flatnonzero(~within)
    return int(bad[-1] + 2) if len(bad) else 1


def retention(curve: np.ndarray) -> dict[str, float]:
    """E7 on an accuracy curve (epochs,) of originals: final value, worst drop below the running maximum (points),
    and whether that drop is a reversal (>= :data:`REVERSAL_PP`)."""
    pct = 100.0 * curve
    drop = float(np.max(np.maximum.accumulate(pct) - pct))
    return {"final": float(pct[-1]), "max_drop_pp": drop, "reversal": float(drop >= REVERSAL_PP)}


def instability(grid: Mapping[str, np.ndarray]) -> dict[tuple[str, float], np.ndarray]:
    """E8 (Fig. 13): per SD arm (layer, p), the selection rate of every unit of its layer, pooled over seeds,
    groupings and eta: selected steps / steps (pairs), in [0, 1]."""
    out = {}
    for a, (_, layer, p) in enumerate(ARMS):
        if layer is None:
            continue
        width = WIDTH[layer]
        sel = grid["selected"][:, :, :, a, :width].reshape(-1, width)  # (runs, width)
        steps = grid["steps"][:, :, :, a].reshape(-1, 1)
        out[(layer, p)] = (sel / np.maximum(steps, 1))[steps[:, 0] > 0]
    return out


def blame_table(model: BaseCNN, x: torch.Tensor, x_adv: torch.Tensor) -> list[dict[str, Any]]:
    """E4 over the pairs (x, x_adv (P, 784) in [0, 1]): per layer and volatility definition, the mean share of
    the blame carried by the top 10 % / 20 % of units and the mean fraction of quiet units."""
    with torch.no_grad():
        a, b = model.activations(x), model.activations(x_adv)
    rows = []
    for layer in ("conv2", "fc"):
        for kind in ("difference", "norms"):
            c = blame_concentration(volatility(a[layer], b[layer], kind))
            rows.append({"layer": layer, "volatility": kind, "units": a[layer].shape[1],
                         "top 10 % share": float(c["top10"].mean()), "top 20 % share": float(c["top20"].mean()),
                         "quiet units (< 1 % of max)": float(c["quiet"].mean())})
    return rows


def mean_volatility(model: BaseCNN, x: torch.Tensor, x_adv: torch.Tensor, layer: str = "conv2") -> np.ndarray:
    """Each unit's volatility (§6's norm of the difference) in ``layer``, averaged over the pairs (x, x_adv)."""
    with torch.no_grad():
        return volatility(model.activations(x)[layer], model.activations(x_adv)[layer]).mean(0).numpy()


def classify_pairs(classifiers: Mapping[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor,
                   x_adv: torch.Tensor, label: np.ndarray, target: np.ndarray, attacked: str = "CNN"
                   ) -> list[dict[str, Any]]:
    """The bridge: every classifier (pixels in [-1, 1], the book's convention -> labels) on the originals and the
    adversarials of the ``attacked`` network (x, x_adv (P, 784) in [0, 1]): percent right on each, and percent
    that take the attack's target."""
    y, t = torch.as_tensor(label), torch.as_tensor(target)
    rows = []
    for name, predict in classifiers.items():
        po, pa = predict(2 * x - 1).cpu(), predict(2 * x_adv - 1).cpu()
        rows.append({"model": name, "originals right (%)": 100.0 * float((po == y).double().mean()),
                     "adversarials right (%)": 100.0 * float((pa == y).double().mean()),
                     f"{attacked}'s target taken (%)": 100.0 * float((pa == t).double().mean())})
    return rows


def _paired(final: np.ndarray, g: int, h: int, a: int, b: int = 0) -> tuple[float, float]:
    """Mean and standard error over seeds of arm a minus arm b (the control) in (grouping g, eta h)."""
    d = final[:, g, h, a] - final[:, g, h, b]
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def _report_gap(grouping: str, eta: float, a: int, b: int = 0) -> float:
    """The report's own difference (points) between the columns of arms ``a`` and ``b`` (first column of each)."""
    cols = list(COLUMN_ARM.values())
    row = paper.HINTHORN_TABLES[grouping][eta]
    return 100.0 * (row[cols.index(a)] - row[cols.index(b)])


def claim_verdicts(grid: Mapping[str, np.ndarray], cfg: SDConfig) -> list[Verdict]:
    """The report's claims about selective dropout (NOTES A.5, claims 5-8), each judged on our grid (seeds'
    mean; "beats" = a mean paired difference above :data:`BEATS_SE` standard errors). ``ours`` is in points,
    ``paper`` the same quantity computed from the report's own tables."""
    final = final_values(grid)  # (S, G, H, A)
    lo, hi = ETAS
    out = []
    for g, grouping in enumerate(GROUPINGS):
        d, se = _paired(final, g, 0, 1)
        out.append(Verdict(f"SD_0.2^c beats the control at η = {lo:g} ({grouping})", 100 * d,
                           _report_gap(grouping, lo, 1), f"> {BEATS_SE:g} SE ({100 * se:.1f} pp)",
                           "holds" if d > BEATS_SE * se else "does not hold", "pp"))
        gaps = [_paired(final, g, 0, 6, b) for b in (0, 4, 5)]
        ok = all(m > BEATS_SE * s for m, s in gaps)
        out.append(Verdict(f"SD_0.7^f beats the control, SD_0.2^f and SD_0.5^f at η = {lo:g} ({grouping}; "
                           "smallest gap)", 100 * min(m for m, _ in gaps),
                           min(_report_gap(grouping, lo, 6, b) for b in (0, 4, 5)), f"each gap > {BEATS_SE:g} SE",
                           "holds" if ok else "does not hold", "pp"))
        best = [max(_paired(final, g, h, a)[0] for a in range(1, len(ARMS))) for h in range(len(ETAS))]
        ref = [max(_report_gap(grouping, eta, a) for a in range(1, len(ARMS))) for eta in ETAS]
        out.append(Verdict(f"best SD minus control falls from η = {lo:g} to {hi:g} ({grouping})",
                           100 * (best[0] - best[1]), ref[0] - ref[1], "> 0",
                           "holds" if best[0] > best[1] else "does not hold", "pp"))
    best_margin = [max(m - BEATS_SE * se for m, se in (_paired(final, g, h, a) for a in range(1, len(ARMS))))
                   for g in range(len(GROUPINGS)) for h in range(len(ETAS))]
    wins = sum(m > 0 for m in best_margin)
    ref_wins = sum(max(_report_gap(gr, eta, a) for a in range(1, len(ARMS))) > 0 for gr in GROUPINGS for eta in ETAS)
    cells = len(GROUPINGS) * len(ETAS)
    out.append(Verdict(f"some SD_p beats the control in nearly every grouping x η (of {cells})", float(wins),
                       float(ref_wins), f">= {cells - 1} of {cells}", "holds" if wins >= cells - 1 else "does not hold",
                       ""))
    return out


def _median(v: list[float]) -> float:
    return float(np.median(v)) if v else float("nan")


def _mean(v: list[float]) -> float:
    return float(np.mean(v)) if v else float("nan")


def speed_and_retention(grid: Mapping[str, np.ndarray], cfg: SDConfig) -> tuple[list[dict[str, Any]], list[Verdict]]:
    """E6 and E7 per arm, over every (seed, grouping, eta): the median ratio of the control's epochs to converge
    (its first E epochs, the same horizon) to the arm's (:func:`convergence_epochs`), and on the training pairs'
    originals the mean final accuracy and the share of runs with a reversal (:func:`retention`). With the
    verdicts of "2-3 times faster" (median ratio >= 2) and "the control reverses to ~98 %, SD does not"."""
    E = cfg.epochs
    n_val = grid["val"].sum(-1)  # (S, G)
    s_, g_, h_ = grid["val_adv"].shape[:3]
    rows, ratios_all = [], []
    for a, (name, layer, _) in enumerate(ARMS):
        ratios, ret = [], []
        for s in range(s_):
            for g in range(g_):
                for h in range(h_):
                    if grid["steps"][s, g, h, a] == 0:  # no training pairs left (tiny smoke grids)
                        continue
                    c = convergence_epochs(grid["val_adv"][s, g, h, 0, :E], int(n_val[s, g]))
                    own = convergence_epochs(grid["val_adv"][s, g, h, a, :E], int(n_val[s, g]))
                    ratios.append(c / own)
                    curve = grid["train_orig"][s, g, h, a]
                    ret.append(retention(curve[~np.isnan(curve)]))
        if layer is not None:
            ratios_all += ratios
        rows.append({"arm": name, "epochs": E * (cfg.control_factor if layer is None else 1),
                     "control ÷ arm, epochs to converge (median)": _median(ratios),
                     "final accuracy on training originals (%)": _mean([r["final"] for r in ret]),
                     "runs with a reversal (%)": 100.0 * _mean([r["reversal"] for r in ret])})
    med = _median(ratios_all)
    verdicts = [Verdict("SD converges 2-3 times faster than the control (median ratio, all SD runs)", med, "2-3x",
                        ">= 2", "holds" if med >= 2 else "does not hold", "x")]
    ctrl, sd = rows[0], rows[1:]
    sd_rev = _mean([r["runs with a reversal (%)"] for r in sd])
    ok = ctrl["runs with a reversal (%)"] > sd_rev and all(
        r["final accuracy on training originals (%)"] > ctrl["final accuracy on training originals (%)"] for r in sd)
    verdicts.append(Verdict("the control reverses on the originals (~98 %), SD with p <= 0.7 does not",
                            ctrl["final accuracy on training originals (%)"], "~98 % (control)",
                            f"control reverses more often than SD ({sd_rev:.0f} % of SD runs) and ends lower than every"
                            " SD arm", "holds" if ok else "does not hold"))
    return rows, verdicts


def instability_verdict(rates: Mapping[tuple[str, float], np.ndarray]) -> Verdict:
    """E8 (Fig. 13): within one run, some units are never selected and some at every pair: the share of SD runs
    with both (ours, percent); the claim holds if at least one (layer, p) has such a run."""
    both = [float(r.min() == 0 and r.max() == 1) for arm in rates.values() for r in arm]
    share = 100.0 * float(np.mean(both)) if both else float("nan")
    return Verdict("instability spans [0, 1]: units never selected and units selected every time, in one run",
                   share, "claim", "in at least one run", "holds" if share > 0 else "does not hold")


def blame_verdict(blame: list[dict[str, Any]]) -> Verdict:
    """Claim 3 (Fig. 10), "blame is concentrated": the 20 % most volatile fc units carry at least
    :data:`BLAME_TOP20_MIN_PCT` % of the change (20 % if it were spread evenly), and more than in conv2."""
    by = {(r["layer"], r["volatility"]): r["top 20 % share"] for r in blame}
    fc, conv = by[("fc", "difference")], by[("conv2", "difference")]
    return Verdict("blame is concentrated in a few fc units (share of the top 20 %)", 100 * fc, "claim",
                   f">= {BLAME_TOP20_MIN_PCT:.0f} % and above conv2's ({100 * conv:.0f} %)",
                   "holds" if 100 * fc >= BLAME_TOP20_MIN_PCT and fc > conv else "does not hold")


def bridge_verdict(bridge: list[dict[str, Any]]) -> Verdict:
    """The bridge: the CNN's adversarials "hardly transfer" to the DAMs when every DAM classifies at least
    :data:`BRIDGE_RIGHT_MIN` % of them correctly."""
    dam = [r["adversarials right (%)"] for r in bridge if r["model"].startswith("DAM")]
    low = min(dam) if dam else float("nan")
    return Verdict("L-BFGS adversarials of the CNN hardly transfer to any DAM (lowest share right)", low, None,
                   f">= {BRIDGE_RIGHT_MIN:g} % right for every DAM", "holds" if low >= BRIDGE_RIGHT_MIN else
                   "does not hold")
