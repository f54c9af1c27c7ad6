"""Figures of appendix B (Hinthorn's report, seed 003): Fig. 8 (pairs), Fig. 9 (raw conv2 maps), Fig. 10 (fc
activations and the concentration of blame), Figs. 11-12 (deconvnet projections), Fig. 13 (instability) and the
learning curves of the selective-dropout grid. Plotting only: the numbers come from :mod:`dam_utils.hinthorn`,
:mod:`dam_utils.deconvnet` and the grid's cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .cnn import BaseCNN
from .deconvnet import project_units
from .hard_negatives import ARMS, ETAS, GROUPINGS
from .selective_dropout import volatility

__all__ = ["fig8_pairs", "fig9_conv2_maps", "fig10_fc", "fig11_group", "fig12_units", "fig13_instability",
           "fig_grid_curves"]


def _img(ax: plt.Axes, v: np.ndarray | torch.Tensor, cmap: str = "gray", lim: float | None = None) -> None:
    v = np.asarray(v).reshape(28, 28)
    if lim is None:
        ax.imshow(v, cmap=cmap, vmin=0, vmax=1)
    else:
        ax.imshow(v, cmap=cmap, vmin=-lim, vmax=lim)
    ax.set_xticks([])
    ax.set_yticks([])


def fig8_pairs(x: torch.Tensor, x_adv: torch.Tensor, label: np.ndarray, target: np.ndarray, l2: np.ndarray,
               linf: np.ndarray) -> Figure:
    """Fig. 8: originals (top), their L-BFGS adversarials (middle) and the perturbation r (bottom, diverging
    scale), each labelled source -> target with ||r||_2 and ||r||_inf. ``x``, ``x_adv`` (P, 784) in [0, 1]."""
    fig, axes = plt.subplots(3, len(x), figsize=(1.7 * len(x), 5.4), squeeze=False)
    r = (x_adv - x).numpy()
    lim = float(np.abs(r).max())
    for j in range(len(x)):
        _img(axes[0, j], x[j])
        axes[0, j].set_title(f"{label[j]} → {target[j]}", fontsize=9)
        _img(axes[1, j], x_adv[j])
        _img(axes[2, j], r[j], "RdBu_r", lim)
        axes[2, j].set_xlabel(f"‖r‖₂ {l2[j]:.2f}\n‖r‖∞ {linf[j]:.2f}", fontsize=8)
    for i, name in enumerate(("original", "adversarial", "r")):
        axes[i, 0].set_ylabel(name)
    fig.tight_layout()
    return fig


def fig9_conv2_maps(model: BaseCNN, x: torch.Tensor, x_adv: torch.Tensor) -> Figure:
    """Fig. 9: the 64 raw conv2 feature maps (4 x 4, after ReLU) of one pair, original | adversarial |
    difference, each as an 8 x 8 mosaic."""
    with torch.no_grad():
        a = model.activations(torch.stack([x, x_adv]))["conv2"].numpy()  # (2, 64, 4, 4)

    def mosaic(m: np.ndarray) -> np.ndarray:  # (64, 4, 4) -> (8 * 5, 8 * 5) with a gap between maps
        out = np.full((40, 40), np.nan)
        for u in range(64):
            r, c = divmod(u, 8)
            out[5 * r : 5 * r + 4, 5 * c : 5 * c + 4] = m[u]
        return out

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    top = float(a.max())
    d = a[1] - a[0]
    lim = float(np.abs(d).max())
    for ax, m, title, kw in ((axes[0], a[0], "original", {"cmap": "magma", "vmin": 0, "vmax": top}),
                             (axes[1], a[1], "adversarial", {"cmap": "magma", "vmin": 0, "vmax": top}),
                             (axes[2], d, "adversarial − original", {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim})):
        im = ax.imshow(mosaic(m), **kw)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def fig10_fc(model: BaseCNN, x: torch.Tensor, x_adv: torch.Tensor, group_x: torch.Tensor,
             group_adv: torch.Tensor) -> Figure:
    """Fig. 10: the 200 fc activations of one pair (original and adversarial), |Δ| per neuron sorted with the
    cumulative share of the blame, for the pair and averaged over a group (``group_x``, ``group_adv`` (G, 784))."""
    with torch.no_grad():
        a = model.activations(torch.stack([x, x_adv]))["fc"].numpy()  # (2, 200)
        g = volatility(model.activations(group_x)["fc"], model.activations(group_adv)["fc"]).mean(0).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    units = np.arange(200)
    axes[0].bar(units, a[0], width=1.0, color="tab:blue", alpha=0.6, label="original")
    axes[0].bar(units, a[1], width=1.0, color="tab:red", alpha=0.6, label="adversarial")
    axes[0].set_xlabel("fc neuron")
    axes[0].set_ylabel("activation")
    axes[0].legend(fontsize=8)
    for v, name, style in ((np.abs(a[1] - a[0]), "this pair", "-"), (g, f"mean over {len(group_x)} pairs", "--")):
        s = np.sort(v)[::-1]
        axes[1].plot(100 * np.arange(1, 201) / 200, 100 * np.cumsum(s) / s.sum(), style, label=name)
    axes[1].plot([0, 100], [0, 100], ":", color="gray", label="blame spread evenly")
    axes[1].set_xlabel("most volatile neurons (%)")
    axes[1].set_ylabel("share of Σ|Δ| (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig11_group(model: BaseCNN, x: torch.Tensor, x_adv: torch.Tensor, title: str) -> Figure:
    """Fig. 11: for each member of a group (rows), the conv2 layer's deconvnet projection (mean over its 64
    units) of the original, of the adversarial, and their difference."""
    po = project_units(model, x, "conv2").mean(1).numpy()  # (M, 784)
    pa = project_units(model, x_adv, "conv2").mean(1).numpy()
    lim = float(np.abs(np.concatenate([po, pa])).max())
    dlim = float(np.abs(pa - po).max())
    fig, axes = plt.subplots(len(x), 3, figsize=(5.4, 1.9 * len(x)), squeeze=False)
    for i in range(len(x)):
        _img(axes[i, 0], po[i], "RdBu_r", lim)
        _img(axes[i, 1], pa[i], "RdBu_r", lim)
        _img(axes[i, 2], pa[i] - po[i], "PuOr_r", dlim)
    for j, name in enumerate(("original", "adversarial", "difference")):
        axes[0, j].set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def fig12_units(model: BaseCNN, x: torch.Tensor, x_adv: torch.Tensor, v: np.ndarray, title: str) -> Figure:
    """Fig. 12: the 64 conv2 units' deconvnet projections, adversarial minus original averaged over a group's
    members, on one colour scale; each tile titled with the unit's volatility ``v`` (64,)
    (:func:`dam_utils.hinthorn.mean_volatility`)."""
    d = (project_units(model, x_adv, "conv2") - project_units(model, x, "conv2")).mean(0).numpy()  # (64, 784)
    lim = float(np.abs(d).max())
    fig, axes = plt.subplots(8, 8, figsize=(9, 10))
    for u, ax in enumerate(axes.flat):
        _img(ax, d[u], "PuOr_r", lim)
        ax.set_title(f"{u}: {v[u]:.1f}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def fig13_instability(rates: Mapping[tuple[str, float], np.ndarray]) -> Figure:
    """Fig. 13: per (layer, p) (columns: p; rows: layer), the histogram of the units' selection rates pooled
    over runs, and below it every run's rates sorted (one thin line per run, at most ten runs)."""
    layers = sorted({k[0] for k in rates})
    ps = sorted({k[1] for k in rates})
    fig, axes = plt.subplots(2 * len(layers), len(ps), figsize=(3.2 * len(ps), 2.6 * 2 * len(layers)),
                             squeeze=False)
    for li, layer in enumerate(layers):
        for j, p in enumerate(ps):
            r = rates.get((layer, p), np.zeros((0, 1)))
            ax, low = axes[2 * li, j], axes[2 * li + 1, j]
            ax.hist(r.ravel(), bins=np.linspace(0, 1, 21), color="tab:purple", alpha=0.7)
            ax.set_title(f"{layer}, p = {p:g} ({len(r)} runs)", fontsize=9)
            ax.set_xlabel("selection rate (instability)", fontsize=8)
            ax.set_ylabel("units", fontsize=8)
            for run in r[:: max(1, len(r) // 10)]:
                low.plot(np.sort(run)[::-1], lw=0.7)
            low.set_ylim(-0.02, 1.02)
            low.set_xlabel("units, sorted", fontsize=8)
            low.set_ylabel("selection rate", fontsize=8)
    fig.tight_layout()
    return fig


def fig_grid_curves(grid: Mapping[str, np.ndarray], metric: str, ylabel: str,
                    arms: Sequence[int] = tuple(range(len(ARMS)))) -> Figure:
    """Per grouping (rows) and eta (columns), the seeds' mean of ``metric`` per epoch for each arm."""
    fig, axes = plt.subplots(len(GROUPINGS), len(ETAS), figsize=(10, 8), sharex=True, squeeze=False)
    for g, grouping in enumerate(GROUPINGS):
        for h, eta in enumerate(ETAS):
            ax = axes[g, h]
            for a in arms:
                runs = grid[metric][:, g, h, a]  # (seeds, epochs), NaN after the arm's last epoch
                curve = runs[:, : int((~np.isnan(runs)).sum(1).max())].mean(0)
                ax.plot(np.arange(1, len(curve) + 1), 100 * curve, "k-" if a == 0 else "-", lw=1.5 if a == 0 else 1,
                        label=ARMS[a][0])
            ax.set_title(f"grouping {grouping}, η = {eta:g}", fontsize=9)
            ax.set_ylabel(ylabel, fontsize=8)
    axes[-1, 0].set_xlabel("epoch")
    axes[-1, 1].set_xlabel("epoch")
    axes[0, 1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
