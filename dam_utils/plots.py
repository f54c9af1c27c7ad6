"""Figures of chapter 1 (Krotov & Hopfield 2018, section 2): Fig. 1, training curves, Fig. 2 and the
feature-to-prototype measures; and the book's one digit renderer, :func:`imshow_digit`.

Digits (images in [-1, 1]) are drawn the same way on every page: ink (+1) black on a white (-1) page,
colour map :data:`DIGIT_CMAP` on the fixed scale [-1, 1], no ticks. Memories (weights, Fig. 2) are not
digits: they use the paper's blue-white-red map, :data:`MEMORY_CMAP`.

Every function builds a new figure with :mod:`matplotlib.pyplot` (so that a notebook shows it with
``plt.show()``) and returns it; nothing is random except the choice of memories in Fig. 2, which is
drawn from a seeded :class:`torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure, SubFigure
from matplotlib.image import AxesImage
from matplotlib.patches import Circle, FancyArrowPatch
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .model import DAM
from .paper import TEST_ERROR

__all__ = [
    "DIGIT_CMAP",
    "MEMORY_CMAP",
    "architecture_figure",
    "as_digit",
    "fig2",
    "imshow_digit",
    "memories_grid",
    "memory_mosaic",
    "specialisation_plot",
    "training_curves",
]

#: Fig. 2 of the paper shows weights in a blue-white-red map over [-1, 1].
MEMORY_CMAP = "bwr"
#: Digits: grayscale with ink (+1) black on a white (-1) page, on the fixed scale [-1, 1].
DIGIT_CMAP = "gray_r"


def as_digit(v: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image (784,) or (28, 28) as a (28, 28) float64 array (pixels unchanged)."""
    a = v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=float)
    return a.reshape(28, 28)


def imshow_digit(ax: Any, v: torch.Tensor | np.ndarray, title: str | None = None) -> AxesImage:
    """Draw one digit ``v`` ((784,) or (28, 28), pixels in [-1, 1]) into ``ax``: ink black on white
    (:data:`DIGIT_CMAP`, ``vmin=-1``, ``vmax=1``), no ticks, optional small title. Returns the image
    artist (``set_data`` animates it). The only way the book draws a digit."""
    im = ax.imshow(as_digit(v), cmap=DIGIT_CMAP, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9, pad=2)
    return im


def _colours(keys: Sequence[Any]) -> dict[Any, Any]:
    cmap = plt.get_cmap("viridis")
    k = max(len(keys) - 1, 1)
    return {key: cmap(0.85 * i / k) for i, key in enumerate(keys)}


# --------------------------------------------------------------------------------------------------
# Fig. 1: the architecture
# --------------------------------------------------------------------------------------------------


def architecture_figure(K: int = 2000) -> Figure:
    """Fig. 1 of the paper as a diagram: 784 visible neurons v_i (pixels in [-1, 1]), K memories with
    visible parts xi_i^mu and recognition parts xi_alpha^mu, and 10 classification neurons that start
    "off" (x_alpha = -1) and are updated once, by eq. (1), to Y_alpha."""
    fig, ax = plt.subplots(figsize=(8.0, 5.4))
    ax.set_xlim(0, 10)
    ax.set_ylim(-1.6, 6.3)
    ax.set_aspect("equal")
    ax.axis("off")

    cols = {"v": 1.3, "mu": 5.0, "c": 8.7}
    vis_y = [5.3, 4.6, 3.9, 3.2, 1.6, 0.9]  # with a gap for the ellipsis
    mem_y = [5.0, 4.1, 3.2, 1.4, 0.5]
    cls_y = [5.3, 4.6, 3.9, 1.6, 0.9]
    r = 0.24

    def column(x: float, ys: list[float], colour: str, gap: tuple[float, float]) -> None:
        for y in ys:
            ax.add_patch(Circle((x, y), r, facecolor=colour, edgecolor="black", lw=1.0, zorder=3))
        ax.text(x, 0.5 * (gap[0] + gap[1]), "⋮", ha="center", va="center", fontsize=18)

    # connections first (under the neurons); one memory highlighted
    for j, ym in enumerate(mem_y):
        hl = j == 1
        for yv in vis_y:
            ax.plot([cols["v"] + r, cols["mu"] - r], [yv, ym], color="tab:blue" if hl else "0.8",
                    lw=1.2 if hl else 0.6, zorder=1)
        for yc in cls_y:
            ax.plot([cols["mu"] + r, cols["c"] - r], [ym, yc], color="tab:red" if hl else "0.8",
                    lw=1.2 if hl else 0.6, zorder=1)

    column(cols["v"], vis_y, "0.92", (3.2, 1.6))
    column(cols["mu"], mem_y, "#ffe9a8", (3.2, 1.4))
    column(cols["c"], cls_y, "#f4b6b6", (3.9, 1.6))

    head = {"ha": "center", "va": "center", "fontsize": 10}
    ax.text(cols["v"], 6.05, "visible neurons $v_i$\n$N = 784$ pixels in $[-1, 1]$", **head)
    ax.text(cols["mu"], 6.05, f"memories $\\mu = 1 \\dots K$\n$K = {K}$", **head)
    ax.text(cols["c"], 6.05, "classification neurons\n$N_c = 10$", **head)
    ax.text(3.15, 4.95, r"$\xi^\mu_i$", color="tab:blue", fontsize=14, ha="center")
    ax.text(6.85, 4.95, r"$\xi^\mu_\alpha$", color="tab:red", fontsize=14, ha="center")
    for y, label in zip(cls_y, ["0", "1", "2", "8", "9"], strict=True):
        ax.text(cols["c"] + 0.38, y, f"$\\alpha={label}$", va="center", fontsize=9)

    arrow = FancyArrowPatch((cols["c"] - 0.55, -0.25), (cols["c"] + 0.55, -0.25), arrowstyle="-|>",
                            mutation_scale=14, color="black")
    ax.add_patch(arrow)
    ax.text(cols["c"] - 0.62, -0.25, "$x_\\alpha = -1$", ha="right", va="center", fontsize=10)
    ax.text(cols["c"] + 0.62, -0.25, "$Y_\\alpha$", ha="left", va="center", fontsize=10)
    ax.text(cols["c"], -0.6, "one update, eq. (1)", ha="center", va="center", fontsize=8, color="0.3")

    eq = (
        r"$Y_\alpha = \tanh\left[\beta \sum_{\mu=1}^{K} \left( "
        r"F_n\left(\xi^\mu_i v_i + \xi^\mu_\alpha - \sum_{\gamma\neq\alpha}\xi^\mu_\gamma\right) - "
        r"F_n\left(\xi^\mu_i v_i - \xi^\mu_\alpha - \sum_{\gamma\neq\alpha}\xi^\mu_\gamma\right)"
        r"\right)\right]$"
        "   (1)"
    )
    ax.text(5.0, -1.2, eq, ha="center", va="center", fontsize=10.5)
    ax.set_title("Fig. 1: the DAM$_n$ classifier, $F_n(x) = x^n$ for $x \\geq 0$, else 0", fontsize=11)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------------


def training_curves(
    histories: Mapping[int, Sequence[Mapping[str, float]]], paper: Mapping[int, float] = TEST_ERROR
) -> Figure:
    """Training error (running, measured during each epoch) and test error (after each epoch) against
    the epoch, one line per n, log scale; the paper's final test error (Fig. 5) as a dashed line."""
    ns = list(histories)
    colours = _colours(ns)
    fig, (ax_tr, ax_te) = plt.subplots(1, 2, figsize=(10.0, 4.0), sharey=True)
    for n in ns:
        h = histories[n]
        ep = [r["epoch"] for r in h]
        ax_tr.plot(ep, [r["train_error"] for r in h], color=colours[n], lw=1.3, label=f"$n = {n}$")
        test = [(r["epoch"], r["test_error"]) for r in h if r.get("test_error") is not None]
        if test:
            ax_te.plot(*zip(*test, strict=True), color=colours[n], lw=1.3, label=f"$n = {n}$")
        if n in paper:
            ax_te.axhline(paper[n], color=colours[n], ls="--", lw=1.0, alpha=0.9)
            last = max(ep) if ep else 1
            ax_te.plot([last], [paper[n]], marker="_", ms=14, mew=2, color=colours[n])
    for ax, title in ((ax_tr, "training error (running, during the epoch)"), (ax_te, "test error")):
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=11)
        ax.grid(True, which="both", alpha=0.3)
    ax_tr.set_ylabel("error (%)")
    handles, labels = ax_te.get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="0.3", ls="--"))
    labels.append("paper (Fig. 5)")
    ax_te.legend(handles, labels, fontsize=9)
    fig.suptitle("Training of the DAM$_n$ models", fontsize=12)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. 2: memories as images
# --------------------------------------------------------------------------------------------------


def memory_mosaic(model: DAM, n_show: int = 25, seed: int = 0, gap: int = 2) -> tuple[np.ndarray, list[int]]:
    """``n_show`` memories chosen at random (seeded) tiled as 28x28 images into one square mosaic
    separated by ``gap`` NaN pixels; returns ``(mosaic, indices)``. With K < n_show all K are shown."""
    k = model.K
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(k, generator=gen)[: min(n_show, k)].tolist()
    side = int(np.ceil(np.sqrt(n_show)))
    size = side * 28 + (side - 1) * gap
    mosaic = np.full((size, size), np.nan, dtype=np.float32)
    xi = model.xi.detach().cpu().float().numpy()
    for j, mu in enumerate(idx):
        r, c = divmod(j, side)
        y0, x0 = r * (28 + gap), c * (28 + gap)
        mosaic[y0 : y0 + 28, x0 : x0 + 28] = xi[mu].reshape(28, 28)
    return mosaic, idx


def memories_grid(
    model: DAM,
    n_show: int = 25,
    seed: int = 0,
    ax: Any = None,
    fig: Figure | SubFigure | None = None,
    colorbar: bool = True,
    title: str | None = None,
) -> Figure:
    """``n_show`` random memories xi_i^mu of one model as 28x28 images (Fig. 2 of the paper): the
    i-th weight is drawn at the i-th pixel, colour map ``bwr`` on the fixed range [-1, 1].

    Draws into ``ax`` if given (else a new axes in ``fig``, else a new figure); returns the figure.
    """
    if ax is None:
        if fig is None:
            fig = plt.figure(figsize=(4.2, 3.8))
        ax = fig.add_subplot(1, 1, 1)
    mosaic, _ = memory_mosaic(model, n_show, seed)
    cmap = plt.get_cmap(MEMORY_CMAP).with_extremes(bad="white")
    im = ax.imshow(mosaic, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title if title is not None else f"$n = {model.n}$", fontsize=12)
    owner = ax.figure
    if colorbar:
        owner.colorbar(im, ax=ax, fraction=0.046, pad=0.04, ticks=[-1, -0.5, 0, 0.5, 1])
    root = owner.get_figure(root=True) if hasattr(owner, "get_figure") else owner
    return root


def fig2(models: Mapping[Any, DAM], n_show: int = 25, seed: int = 0, ncols: int = 2,
         titles: Mapping[Any, str] | None = None, suptitle: str | None = None) -> Figure:
    """Fig. 2 of the paper: ``n_show`` random memories of each model, ``ncols`` models per row, one shared
    colour bar over [-1, 1]. The same seed picks the memories of every model (their order is arbitrary).
    ``titles`` (by key of ``models``) replaces the default panel titles ``n = ...``."""
    ns = list(models)
    ncols = max(1, min(ncols, len(ns)))
    nrows = -(-len(ns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 1.0, 3.7 * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax, n in zip(flat, ns, strict=False):
        memories_grid(models[n], n_show=n_show, seed=seed, ax=ax, colorbar=False,
                      title=titles.get(n) if titles else None)
    for ax in flat[len(ns) :]:
        ax.set_visible(False)
    im = flat[0].images[0]
    fig.colorbar(im, ax=flat, fraction=0.03, pad=0.03, ticks=[-1, -0.5, 0, 0.5, 1], label=r"$\xi^\mu_i$")
    fig.suptitle(suptitle or f"Fig. 2: feature to prototype transition ({n_show} random memories per model)",
                 fontsize=12)
    return fig


# --------------------------------------------------------------------------------------------------
# The feature -> prototype measures against n
# --------------------------------------------------------------------------------------------------


def specialisation_plot(
    specialisation: Mapping[int, Mapping[str, Any]],
    contributors: Mapping[int, torch.Tensor | np.ndarray] | None = None,
    baseline: Mapping[str, Any] | None = None,
) -> Figure:
    """The feature-to-prototype transition as numbers against n.

    Left: fraction of memories with exactly one positive class weight, and fraction whose largest
    class weight beats the runner-up by the margin (:func:`dam_utils.metrics.class_specialisation`);
    ``baseline`` (e.g. :func:`dam_utils.metrics.initial_specialisation`) draws both for the untrained
    weights as dashed lines. Middle: distribution of the number of positive
    class weights per memory, one bar group per n. Right (if ``contributors`` is given): median and
    quartiles of the effective number of memories deciding each test image
    (:func:`dam_utils.metrics.contributors_per_decision`), log scale.
    """
    ns = list(specialisation)
    colours = _colours(ns)
    panels = 3 if contributors is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8))
    xpos = np.arange(len(ns))

    ax = axes[0]
    margin = next(iter(specialisation.values()))["margin"] if ns else 0.5
    criteria = (("fraction_single", "exactly one $\\xi^\\mu_\\alpha > 0$", "tab:blue"),
                ("fraction_margin", f"top $-$ second $\\geq {margin:g}$", "tab:orange"))
    for j, (key, label, colour) in enumerate(criteria):
        frac = [100.0 * specialisation[n][key] for n in ns]
        ax.bar(xpos + (j - 0.5) * 0.38, frac, width=0.38, color=colour, label=label)
        if baseline is not None:
            ax.axhline(100.0 * baseline[key], color=colour, ls="--", lw=1.2)
    if baseline is not None:
        ax.plot([], [], color="0.3", ls="--", label="untrained weights")
    ax.set_xticks(xpos, [f"$n={n}$" for n in ns])
    ax.set_ylim(0, 100)
    ax.set_ylabel("memories (%)")
    ax.set_title("specialised memories", fontsize=11)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, axis="y", alpha=0.3)

    ax = axes[1]
    width = 0.8 / max(len(ns), 1)
    for j, n in enumerate(ns):
        counts = np.asarray(specialisation[n]["positive_counts"], dtype=float)
        share = 100.0 * counts / max(counts.sum(), 1.0)
        ax.bar(np.arange(len(counts)) + (j - (len(ns) - 1) / 2) * width, share, width=width,
               color=colours[n], label=f"$n={n}$")
    ax.set_xticks(np.arange(11))
    ax.set_xlabel("number of positive class weights $\\xi^\\mu_\\alpha > 0$")
    ax.set_ylabel("memories (%)")
    ax.set_title("class weights per memory", fontsize=11)
    ax.legend(fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)

    if contributors is not None:
        ax = axes[2]
        for j, n in enumerate(ns):
            v = np.asarray(torch.as_tensor(contributors[n]).double().cpu())
            q25, q50, q75 = np.quantile(v, [0.25, 0.5, 0.75]) if v.size else (np.nan,) * 3
            ax.errorbar([j], [q50], yerr=[[q50 - q25], [q75 - q50]], fmt="o", ms=8, capsize=5,
                        color=colours[n])
        ax.set_xticks(xpos, [f"$n={n}$" for n in ns])
        ax.set_xlim(-0.5, len(ns) - 0.5)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("effective number of memories")
        ax.set_title("memories deciding a test image\n(median, quartiles)", fontsize=11)
        ax.grid(True, which="both", axis="y", alpha=0.3)

    fig.suptitle("Feature to prototype: the measures against $n$", fontsize=12)
    fig.tight_layout()
    return fig


def dead_share_curves(
    study: Mapping[str, Sequence[Mapping[str, float]]],
    histories: Mapping[int, Sequence[Mapping[str, float]]] | None = None,
    study_n: int = 30,
) -> Figure:
    """Share of dead memories (on the training set) against the epoch: left, the same n = ``study_n``
    model trained with each recipe of the dead-memory study (``study[recipe]`` = records with ``epoch``
    and ``dead_train_%``); right, the book models' training histories, one line per n."""
    fig, axes = plt.subplots(1, 2 if histories else 1, figsize=(10.0 if histories else 5.2, 3.6), squeeze=False)
    ax = axes[0, 0]
    for recipe, curve in study.items():
        ax.plot([c["epoch"] for c in curve], [c["dead_train_%"] for c in curve], marker="o", ms=3, label=recipe)
    ax.set_title(f"$n = {study_n}$, one seed, three recipes", fontsize=11)
    if histories:
        colours = _colours(list(histories))
        for n, h in histories.items():
            rec = [(r["epoch"], r["dead_train_%"]) for r in h if "dead_train_%" in r]
            if rec:
                axes[0, 1].plot(*zip(*rec, strict=True), color=colours[n], label=f"$n = {n}$")
        axes[0, 1].set_title("the book models", fontsize=11)
    for a in axes[0]:
        a.set_xlabel("epoch")
        a.set_ylabel("dead memories (% of K)")
        a.grid(True, alpha=0.3)
        a.legend(fontsize=9)
    fig.tight_layout()
    return fig


def transfer_heatmap(table: np.ndarray, keys: Sequence[Any], title: str) -> Figure:
    """A transfer table (G, G) in percent as a heat map: rows the generating model, columns the tested one."""
    G = len(keys)
    fig, ax = plt.subplots(figsize=(0.62 * G + 2.5, 0.5 * G + 1.5))
    im = ax.imshow(table, cmap="viridis", vmin=0, vmax=100)
    for i in range(G):
        for j in range(G):
            ax.text(j, i, f"{table[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if table[i, j] < 60 else "black")
    ax.set_xticks(range(G), [str(k) for k in keys], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(G), [str(k) for k in keys], fontsize=8)
    ax.set_xlabel("tested model")
    ax.set_ylabel("generating model")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig
