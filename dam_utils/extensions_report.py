"""Chapter 6's tables, verdicts and figures, read from the parts of :mod:`dam_utils.extensions`.

Nothing is computed from a model here: every number comes from a :class:`~dam_utils.extensions.PartResult`
(cached or computed in the notebook), every rule from :mod:`dam_utils.claims`, every paper value from
:mod:`dam_utils.paper`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from scipy.stats import binomtest

from . import claims, paper
from .extension_models import POWERS
from .extensions import PartResult
from .plots import transfer_heatmap

__all__ = ["ADV_EPS", "adv_labels", "adv_rows", "adv_verdicts", "clean_error", "fashion_error_rows", "fashion_verdict",
           "feature_rows", "feature_verdict", "mcnemar", "median_distance", "model_rows", "plot_distances",
           "plot_table", "transfer_pairs"]

#: The FGSM step of the tables (on the [0, 1] pixel scale): the one the adversarial training used.
ADV_EPS = 0.1


def adv_labels(n: int) -> tuple[str, str, str]:
    """The plain book model, its FGSM-trained version and its control."""
    return f"DAM n={n}", f"DAM n={n} + FGSM", f"DAM n={n} control"


def median_distance(res: PartResult, key: str) -> float:
    """Median L2 distance (pixels in [-1, 1]) from a clean image to ``key``'s own decision boundary."""
    return float(res.transfer.summaries[key]["median_boundary_distance"])


def _fgsm(res: PartResult, key: str, eps: float = ADV_EPS) -> float:
    return res.fgsm_error(key)[res.fgsm_eps.index(eps)]


def clean_error(res: PartResult, key: str) -> float:
    """Percent of the whole clean test set that ``key`` misclassifies."""
    return 100.0 * float((res.clean_full[res.keys.index(key)] != res.labels_full).mean())


def mcnemar(res: PartResult, a: str, b: str) -> dict[str, float]:
    """McNemar's exact test of two models on the whole clean test set: images only ``a`` gets right,
    only ``b`` gets right, and the two-sided p-value (scipy's exact binomial test on the discordant pairs)."""
    ra = res.clean_full[res.keys.index(a)] == res.labels_full
    rb = res.clean_full[res.keys.index(b)] == res.labels_full
    only_a, only_b = int((ra & ~rb).sum()), int((rb & ~ra).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": float(p)}


def model_rows(res: PartResult) -> list[dict[str, Any]]:
    """Each model of a part: its facts (test error on the whole test set, epochs, wall time, dead memories), its
    median boundary distance, its deformation failures and its error on its own FGSM images at :data:`ADV_EPS`."""
    rows = []
    for k in res.keys:
        s = res.transfer.summaries[k]
        rows.append({"model": k, **res.info[k], "median boundary distance": median_distance(res, k),
                     "not crossed": int(s["failed"]), f"own FGSM ε={ADV_EPS:g} error (%)": _fgsm(res, k),
                     "zero gradient": int(res.fgsm_zero[res.keys.index(k)].sum())})
    return rows


def transfer_pairs(res: PartResult) -> dict[tuple[str, str], float]:
    """``{(generator, tested): error %}`` of the part's transfer table."""
    tab = res.transfer.table()
    return {(g, t): float(tab[i, j]) for i, g in enumerate(res.keys) for j, t in enumerate(res.keys)}


def adv_rows(res: PartResult) -> list[dict[str, Any]]:
    """Per power: the plain model, the FGSM-trained one and the control, side by side: clean error, median boundary
    distance, own-FGSM error, and the error on the adversarial images of each plain model (transfer)."""
    cells = transfer_pairs(res)
    rows = []
    for n in POWERS:
        for k in adv_labels(n):
            row = {"model": k, "clean test error (%)": clean_error(res, k),
                   "median boundary distance": median_distance(res, k),
                   f"own FGSM ε={ADV_EPS:g} (%)": _fgsm(res, k)}
            for g in POWERS:
                row[f"on DAM n={g}'s images (%)"] = cells[(f"DAM n={g}", k)]
            rows.append(row)
    return rows


def adv_verdicts(res: PartResult) -> dict[int, dict[str, claims.Verdict]]:
    """The paper's two expectations, per power: ``robust`` (:func:`~dam_utils.claims.adv_more_robust`) and
    ``accurate`` (:func:`~dam_utils.claims.adv_more_accurate`, McNemar against the control)."""
    out = {}
    for n in POWERS:
        plain, adv, ctl = adv_labels(n)
        err = {k: clean_error(res, k) for k in (plain, adv, ctl)}
        test = mcnemar(res, adv, ctl)
        out[n] = {"robust": claims.adv_more_robust(n, median_distance(res, adv), median_distance(res, plain),
                                                   median_distance(res, ctl)),
                  "accurate": claims.adv_more_accurate(n, err[adv], err[plain], err[ctl], test["p_value"])}
    return out


def feature_rows(res: PartResult) -> list[dict[str, Any]]:
    """The CNN with its own head and the DAMs on its features: test error, boundary distance, own FGSM error and
    transfer both ways (the error of each on the other's adversarial images)."""
    cells = transfer_pairs(res)
    rows = []
    for k in res.keys:
        row = {"model": k, "test error (%)": res.info[k]["test error (%)"],
               "median boundary distance": median_distance(res, k), f"own FGSM ε={ADV_EPS:g} (%)": _fgsm(res, k)}
        for g in res.keys:
            row[f"on {g}'s images (%)"] = cells[(g, k)]
        rows.append(row)
    return rows


def feature_verdict(res: PartResult, dataset: str, large: int = max(POWERS)) -> claims.Verdict:
    """The large-n DAM on the CNN's features against the CNN's own head (:func:`~dam_utils.claims.feature_head`)."""
    return claims.feature_head(dataset, res.info[f"CNN + DAM n={large}"]["test error (%)"],
                               res.info["CNN"]["test error (%)"])


def fashion_error_rows(res: PartResult, mnist_entries: Mapping[int, Mapping[str, Any]],
                       mnist_histories: Mapping[int, Sequence[Mapping[str, float]]]) -> list[dict[str, Any]]:
    """Chapter 1's error table on Fashion-MNIST: each power's test error beside the MNIST book model's at the same
    epoch (its training history) and at the end of its schedule, and the paper's MNIST error."""
    rows = []
    for n in POWERS:
        k = f"DAM n={n}"
        epochs = int(res.info[k]["epochs"])
        at = next((h["test_error"] for h in mnist_histories[n] if int(h["epoch"]) == epochs), None)
        rows.append({"n": n, "Fashion-MNIST test error (%)": res.info[k]["test error (%)"], "epochs": epochs,
                     f"MNIST, same model at epoch {epochs} (%)": at,
                     f"MNIST, epoch {mnist_entries[n]['epochs']} (%)": mnist_entries[n]["test_error"],
                     "paper, MNIST (%)": paper.TEST_ERROR.get(n),
                     "dead memories, train (%)": res.info[k].get("dead memories, train (%)")})
    return rows


def fashion_verdict(res: PartResult) -> claims.Verdict:
    """Section 5's key cell on Fashion-MNIST: the n = 30 model on the images made by n = 2 (the paper's "97 %
    correct" on MNIST, :func:`~dam_utils.claims.fig5_small_to_large`)."""
    cells = {(int(g.split("=")[1]), int(t.split("=")[1])): v for (g, t), v in transfer_pairs(res).items()}
    v = claims.fig5_small_to_large(cells, sorted({g for g, _ in cells}))
    return claims.Verdict(v.claim + " (Fashion-MNIST)", v.ours, v.paper, v.tolerance, v.state, v.unit)


def plot_table(res: PartResult, title: str) -> Figure:
    return transfer_heatmap(res.transfer.table(), res.keys, title)


def plot_distances(res: PartResult, keys: Sequence[str] | None = None, title: str = "") -> Figure:
    """The distribution of the L2 distance from each clean image to each model's own decision boundary
    (cumulative: the share of images whose boundary is closer than d). Images never carried across are left out
    (counted in the tables)."""
    keys = list(keys or res.keys)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    assert res.transfer.distances is not None
    for k in keys:
        d = np.sort(res.transfer.distances[res.keys.index(k)])
        d = d[np.isfinite(d)]
        style = "-" if "FGSM" in k or k.startswith("CNN +") else "--" if "control" in k else ":"
        ax.plot(d, 100.0 * np.arange(1, len(d) + 1) / res.transfer.n_images, style, label=k)
    ax.set_xlabel("L2 distance to the model's own decision boundary (pixels in [-1, 1])")
    ax.set_ylabel("test images closer than that (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
