"""Figures of appendix C (Musunuru et al., seed 004): the stored prototypes, the energy landscapes of Figs. 2, 4 and
5 on one scale, the iterative rule's violations, the recall of adversarial images, and the cone check. Plotting
only: the numbers come from :mod:`dam_utils.hopfield`, :mod:`dam_utils.dense_net` and
:mod:`dam_utils.musunuru_report`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .plots import imshow_digit

__all__ = ["fig_cone", "fig_landscapes", "fig_prototypes", "fig_recall", "fig_violations"]


def fig_prototypes(xi: torch.Tensor, labels: torch.Tensor) -> Figure:
    """The stored patterns (P, 784) of +-1, one per column, titled with their digit."""
    fig, axes = plt.subplots(1, len(xi), figsize=(1.1 * len(xi), 1.4), squeeze=False)
    for ax, p, lab in zip(axes[0], xi, labels, strict=True):
        imshow_digit(ax, p, str(int(lab)))
    fig.tight_layout()
    return fig


def _sphere(land: Mapping[str, torch.Tensor], lo: float, hi: float) -> tuple[np.ndarray, ...]:
    """Cartesian surface of radius 1 + (E - lo) / (hi - lo) over the landscape's (theta, phi) grid."""
    t, f = np.meshgrid(land["theta"].numpy(), land["phi"].numpy(), indexing="ij")
    r = 1 + (land["energy"].numpy() - lo) / (hi - lo)
    return r * np.sin(t) * np.cos(f), r * np.sin(t) * np.sin(f), r * np.cos(t), r


def fig_landscapes(panels: Sequence[tuple[str, Mapping[str, torch.Tensor]]],
                   overlay: tuple[str, Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
                   marks: Sequence[str] = ()) -> Figure:
    """Figs. 2 and 4 (one panel per (title, landscape) of :func:`~dam_utils.hopfield.sphere_landscape`) and Fig. 5
    (``overlay``: title, the earlier landscape in red and the later one as a black wireframe), all on ONE energy
    scale: radius 1 + (E - E_min) / (E_max - E_min), colour E. The three basis patterns are marked (``marks``
    names them)."""
    lands = [p[1] for p in panels] + ([overlay[1], overlay[2]] if overlay else [])
    lo = min(float(v["energy"].min()) for v in lands)
    hi = max(float(v["energy"].max()) for v in lands)
    n = len(panels) + (overlay is not None)
    fig = plt.figure(figsize=(5.2 * n, 5.6))
    norm = plt.Normalize(lo, hi)
    cmap = plt.get_cmap("viridis")
    for i, (title, land) in enumerate(panels):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        x, y, z, _ = _sphere(land, lo, hi)
        ax.plot_surface(x, y, z, facecolors=cmap(norm(land["energy"].numpy())), rstride=2, cstride=2,
                        linewidth=0, antialiased=False, shade=False)
        for k, c in enumerate(land["coords"].numpy()):
            ax.scatter(*(2.1 * c), color="red", s=24)
            ax.text(*(2.2 * c), marks[k] if k < len(marks) else str(k), color="red", fontsize=10)
        ax.set_title(title, fontsize=11)
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
    if overlay is not None:
        title, before, after = overlay
        ax = fig.add_subplot(1, n, n, projection="3d")
        xb, yb, zb, _ = _sphere(before, lo, hi)
        xa, ya, za, _ = _sphere(after, lo, hi)
        ax.plot_surface(xb, yb, zb, color="red", alpha=0.35, rstride=3, cstride=3, linewidth=0)
        ax.plot_wireframe(xa, ya, za, color="black", rstride=6, cstride=6, linewidth=0.4)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=fig.axes, shrink=0.6, label="energy E (eq. 2)")
    return fig


def fig_violations(history: Sequence[Mapping[str, Any]]) -> Figure:
    """The iterative rule at work: neighbours found not higher in energy than their pattern, per iteration."""
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    v = [h["violations"] for h in history]
    ax.bar(range(len(v)), v, color="tab:blue")
    ax.set_xlabel("iteration")
    ax.set_ylabel("violations found")
    ax.set_yscale("symlog")
    fig.tight_layout()
    return fig


def fig_recall(rows: Sequence[tuple[str, Sequence[torch.Tensor]]], columns: Sequence[str]) -> Figure:
    """One row per example (its title, then images (784,) with pixels in [-1, 1] or spins), one column per
    stage (``columns``: e.g. original, adversarial, binarised, recalled)."""
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.5 * len(columns), 1.6 * len(rows)), squeeze=False)
    for i, (title, imgs) in enumerate(rows):
        for j, v in enumerate(imgs):
            imshow_digit(axes[i, j], v, columns[j] if i == 0 else None)
        axes[i, 0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    return fig


def fig_cone(history: Sequence[Mapping[str, Any]]) -> Figure:
    """E4b: the hidden units' biases over training from the canonical wedge (every bias positive, units sorted;
    left), and the inverted pairs of the initial order for both keys and the bias sign changes (right)."""
    steps = np.array([max(r["step"], 1) for r in history])
    keys = np.array([r["keys_bias"] for r in history])  # (checkpoints, H)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, keys.shape[1]))
    for j in range(keys.shape[1]):
        a.plot(steps, keys[:, j], color=colours[j], lw=0.6)
    a.axhline(0, color="black", lw=0.8)
    a.set_xscale("log")
    a.set_xlabel("SGD step")
    a.set_ylabel("bias of hidden unit (colour: initial rank)")
    h = keys.shape[1]
    for key, style in (("bias", "-"), ("norm", "--")):
        b.plot(steps, [100 * r[key]["inversions"] / (h * (h - 1) / 2) for r in history], style,
               label=f"{key}: inverted pairs (% of {h * (h - 1) // 2})")
    b.plot(steps, [100 * r["bias"]["sign_changes"] / h for r in history], ":", label=f"bias: sign changes (% of {h})")
    b.set_xscale("log")
    b.set_xlabel("SGD step")
    b.set_ylabel("%")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig
