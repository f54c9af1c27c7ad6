"""Tables, verdicts and figures of chapter 5, from :class:`~dam_utils.section6.Section6Results`; formats and
draws, never attacks.

* :func:`robustness_rows`: one row per model: clean error, the white-box distance to its decision boundary
  (chapter 3's attack), its error under its own FGSM, and its mean error on the small-n models' transferred
  adversarial sets.
* :func:`sec6_verdicts`: the paper's section-6 sentence as one verdict per pair and measure
  (:func:`dam_utils.claims.sec6_better`).
* :func:`detector_rocs`, :func:`pair_rows`: the guard of section 5 as a detector (ROC, AUC) and the paired
  system's outcomes under each rule of :func:`dam_utils.pairing.pair_decision`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from . import claims
from .pairing import RULES, outcomes, pair_decision, roc
from .plots import imshow_digit, transfer_heatmap
from .section6 import Section6Results
from .transfer import RubbishTransferResult

__all__ = [
    "DETECT_SETS",
    "detector_rocs",
    "guard_confident_and_right",
    "network_rows",
    "pair_rows",
    "plot_fgsm",
    "plot_rocs",
    "plot_transfer",
    "plot_whitebox",
    "robustness_rows",
    "sec6_pairs",
    "sec6_verdicts",
    "small_generators",
    "transfer_error_on_small",
]

#: The adversarial sets the guard is tested on: those of the vulnerable models of section 5.
DETECT_SETS = ("DAM n=2", "DAM n=3", "net CE n=1")
RULE_TEXT = {"paper": "paper's rule", "reject_disagreement": "reject on disagreement",
             "guard_label": "guard's label on disagreement"}


def small_generators(res: Section6Results, exclude: Sequence[str] = ()) -> list[str]:
    """The small-n models (n <= :data:`~dam_utils.claims.SMALL_N_MAX`, both families), minus ``exclude``."""
    return [k for k in res.keys if res.info[k]["n"] <= claims.SMALL_N_MAX and k not in exclude]


def transfer_error_on_small(res: Section6Results, tested: str, exclude: Sequence[str] = ()) -> float:
    """Mean error (percent) of ``tested`` on the adversarial sets of the small-n models other than itself and
    ``exclude`` (section 5's transfer experiment, both families)."""
    gens = small_generators(res, (tested, *exclude))
    tab, t = res.transfer.table(), res.keys.index(tested)
    return float(np.mean([tab[res.keys.index(g), t] for g in gens]))


def fgsm_own_error(res: Section6Results, key: str, eps: float) -> float:
    """Error (percent) of ``key`` on its own FGSM images at ``eps`` (white-box)."""
    e, i = res.fgsm_eps.index(eps), res.keys.index(key)
    return float(res.fgsm_error(e)[i, i])


def network_rows(res: Section6Results) -> list[dict[str, Any]]:
    """One row per feed-forward network, those left out of the attacks included (``in the attacks``)."""
    nets = {k: (v, True) for k, v in res.info.items() if v["family"] == "net"}
    nets.update({k: (v, False) for k, v in res.config.get("excluded", {}).items()})
    rows = [{"network": k, "n": v["n"], "objective": v["objective"], "T": v.get("T"), "m": v.get("m"),
             "lr": v.get("lr"), "epochs": v.get("epochs"), "test error %": v["test_error"],
             "train error %": v.get("train_error"), "dead units %": v.get("dead_units_pct"),
             "wall time (s)": v.get("wall_time_s"), "in the attacks": used} for k, (v, used) in nets.items()]
    return sorted(rows, key=lambda r: (r["objective"], r["n"]))


def robustness_rows(res: Section6Results) -> list[dict[str, Any]]:
    """One row per model (table order)."""
    rows = []
    for k in res.keys:
        s = res.transfer.summaries[k]
        row = {"model": k, "clean error %": res.info[k]["test_error"],
               "boundary distance (L2, median)": s["median_boundary_distance"],
               "attack failures": s["failed"],
               "error on small-n sets %": transfer_error_on_small(res, k)}
        row.update({f"own FGSM ε={e:g} %": fgsm_own_error(res, k, e) for e in res.fgsm_eps})
        row["FGSM zero gradient"] = int(res.fgsm_zero[res.keys.index(k)].sum())
        rows.append(row)
    return rows


def sec6_pairs(res: Section6Results) -> list[tuple[str, str]]:
    """``(claimed better, claimed worse)`` for every power the families share: each CE network with n >= 2
    against the ReLU network, each DAM against the CE network of the same n, and each DAM against the network
    of the same n trained with the DAM's objective (which leaves only the training algorithm different)."""
    def nets(objective: str) -> dict[int, str]:
        return {res.info[k]["n"]: k for k in res.keys
                if res.info[k]["family"] == "net" and res.info[k]["objective"] == objective}

    ce, dl = nets("ce"), nets("dam")
    dams = {res.info[k]["n"]: k for k in res.keys if res.info[k]["family"] == "DAM"}
    out = [(ce[n], ce[1]) for n in sorted(ce) if n >= 2 and 1 in ce]
    out += [(dams[n], ce[n]) for n in sorted(dams) if n in ce]
    return out + [(dams[n], dl[n]) for n in sorted(dams) if n in dl]


def sec6_verdicts(res: Section6Results, better: str, worse: str) -> dict[str, claims.Verdict]:
    """The two measures of one pair: ``"transfer"`` (mean error on the small-n sets made by neither) and
    ``"fgsm"`` (own FGSM at :data:`~dam_utils.claims.SEC6_FGSM_EPS`)."""
    ex = (better, worse)
    err = {k: transfer_error_on_small(res, k, ex) for k in ex}
    eps = claims.SEC6_FGSM_EPS
    fg = eps in res.fgsm_eps
    return {
        "transfer": claims.sec6_better(f"{better} beats {worse}: transferred adversarial images",
                                       err[better], err[worse]),
        "fgsm": claims.sec6_better(f"{better} beats {worse}: own FGSM at ε = {eps:g}",
                                   fgsm_own_error(res, better, eps) if fg else None,
                                   fgsm_own_error(res, worse, eps) if fg else None),
    }


def _fig6_column(res: Section6Results, fig6: RubbishTransferResult | None) -> int | None:
    """The column of Fig. 6 that holds the guard, or None: the same power and the same weights (SHA-256 of
    both caches' model records; a result computed in a notebook has none, and then the same fitted beta_sm,
    up to the float noise of another thread count, identifies the model)."""
    n = res.info[res.guard]["n"]
    if fig6 is None or n not in fig6.n_values:
        return None
    theirs = fig6.config.get("models", {}).get(str(n), {}).get("sha256")
    ours = res.config.get("models", {}).get(res.guard, {}).get("sha256")
    same = theirs == ours if theirs and ours else bool(np.isclose(fig6.beta_own[n], res.beta_guard, rtol=1e-6))
    return fig6.n_values.index(n) if same else None


def detector_rocs(res: Section6Results, fig6: RubbishTransferResult | None = None) -> dict[str, dict[str, Any]]:
    """ROC and AUC of the guard's confidence, clean test digits against each adversarial set of
    :data:`DETECT_SETS` and, when ``fig6`` holds the guard's power, each model's rubbish set of Fig. 6 (at
    the guard's own beta_sm, as there; only when Fig. 6's model of that power is the guard)."""
    out = {f"adversarial, {g}": roc(res.guard_clean_conf, res.guard_conf(g)) for g in DETECT_SETS if g in res.keys}
    t = _fig6_column(res, fig6)
    if fig6 is not None and t is not None:
        for g, ng in enumerate(fig6.n_values):
            out[f"rubbish, DAM n={ng}"] = roc(res.guard_clean_conf, fig6.z_own[g, t])
    return out


def guard_confident_and_right(res: Section6Results, gen: str) -> float:
    """Percent of generator ``gen``'s adversarial set that the guard labels with the clean image's true label
    at a confidence at or above the threshold (the images the paper's rule passes with the fooled label)."""
    g, t = res.keys.index(gen), res.keys.index(res.guard)
    right = (res.transfer.predictions[g, t] == res.transfer.labels) & (res.guard_conf(gen) >= res.threshold)
    return 100.0 * float(right.mean())


def pair_rows(res: Section6Results, accurate: str, fig6: RubbishTransferResult | None = None) -> list[dict[str, Any]]:
    """The pair (``accurate``, guard) under each rule: one row per input set (clean test digits, the
    adversarial sets of :data:`DETECT_SETS` and the accurate model's own, Fig. 6's rubbish), with the shares
    rejected, labelled correctly and wrongly. The accurate model alone is the first row of each set."""
    tr, a, gi = res.transfer, res.keys.index(accurate), res.keys.index(res.guard)
    N = tr.n_images
    clean_conf, clean_guard = res.guard_clean_conf[:N], res.guard_clean_pred[:N]
    sets = [("clean test digits", tr.clean_predictions[a], clean_guard, clean_conf, tr.labels)]
    for g in dict.fromkeys((*DETECT_SETS, accurate)):
        j = res.keys.index(g)
        sets.append((f"adversarial, {g}", tr.predictions[j, a], tr.predictions[j, gi], res.guard_conf(g), tr.labels))
    rows = []
    for name, acc, guard, conf, labels in sets:
        alone = outcomes(acc, labels)
        rows.append({"inputs": name, "system": f"{accurate} alone", **alone})
        for rule in RULES:
            rows.append({"inputs": name, "system": f"pair, {RULE_TEXT[rule]}",
                         **outcomes(pair_decision(acc, guard, conf, res.threshold, rule), labels)})
    t = _fig6_column(res, fig6)
    if fig6 is not None and t is not None:
        for g, ng in enumerate(fig6.n_values):
            rej = 100.0 * float((fig6.z_own[g, t] < res.threshold).mean())
            rows.append({"inputs": f"rubbish, DAM n={ng}", "system": "pair, any rule", "rejected": rej,
                         "correct": None, "wrong": None})
    return rows


# ---------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------


def plot_transfer(res: Section6Results, fgsm_eps: float | None = None) -> Figure:
    """The transfer table as a heat map (rows: generator, columns: tested); FGSM at ``fgsm_eps`` if given."""
    tab = res.transfer.table() if fgsm_eps is None else res.fgsm_error(res.fgsm_eps.index(fgsm_eps))
    what = "one step behind the boundary" if fgsm_eps is None else f"FGSM, ε = {fgsm_eps:g}"
    return transfer_heatmap(tab, res.keys, f"Error (%) on adversarial images ({what})")


def plot_fgsm(res: Section6Results) -> Figure:
    """Each model's error on its own FGSM images against the step ε."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k in res.keys:
        i = res.keys.index(k)
        err = [res.fgsm_error(e)[i, i] for e in range(len(res.fgsm_eps))]
        style = "-" if res.info[k]["family"] == "DAM" else "--" if res.info[k]["objective"] == "ce" else ":"
        ax.plot([0, *res.fgsm_eps], [res.info[k]["test_error"], *err], style, marker="o", ms=3, label=k)
    ax.set_xlabel("ε (pixel scale [0, 1])")
    ax.set_ylabel("error on its own FGSM images (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_rocs(rocs: dict[str, dict[str, Any]], guard: str) -> Figure:
    """The guard's ROC curves: share of clean digits kept against share of the other set kept."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, r in rocs.items():
        ax.plot(r["fpr"], r["tpr"], label=f"{name} (AUC {r['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set_xlabel("other images kept (false positive rate)")
    ax.set_ylabel("clean test digits kept (true positive rate)")
    ax.set_title(f"{guard} as a detector", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_whitebox(res: Section6Results, data: Any, n_show: int = 6) -> Figure:
    """Per pair: clean test images (top) and the white-box attacker's images (bottom), titled by the labels
    the accurate model / the guard give them."""
    pairs = list(res.whitebox)
    fig, axes = plt.subplots(2 * len(pairs), n_show, figsize=(1.3 * n_show, 2.9 * len(pairs)), squeeze=False)
    for p, k in enumerate(pairs):
        w = res.whitebox[k]
        for j in range(n_show):
            imshow_digit(axes[2 * p, j], data.x_test[j], f"clean {int(data.y_test[j])}")
            ok = "✓" if w["success"][j] else "✗"
            imshow_digit(axes[2 * p + 1, j], w["samples"][j], f"{int(w['acc_pred'][j])}/{int(w['guard_pred'][j])} {ok}")
        axes[2 * p, 0].set_ylabel(k, fontsize=7)
    fig.tight_layout()
    return fig
