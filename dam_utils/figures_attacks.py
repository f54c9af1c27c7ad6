"""Figures of chapters 2 and 3 (Krotov & Hopfield 2018, sections 3 and 4): Fig. 3 (rubbish images),
Fig. 4 (the two objectives along a deformation, and clean / boundary / final triplets) and an animation
of the deformation for the static site.

Images are (784,) or (N, 784) tensors with pixels in [-1, 1]; every one is drawn by the book's digit
renderer :func:`dam_utils.plots.imshow_digit` (ink black on white, fixed scale [-1, 1]). Every function
builds a new figure and returns it; nothing is random.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure

from .plots import imshow_digit

__all__ = [
    "SECOND_COLOUR",
    "TOP_COLOUR",
    "animation_frames",
    "animation_html",
    "deformation_animation",
    "fig3_rubbish",
    "fig4_curves",
    "fig4_triplets",
    "stable_ids",
]

#: Fig. 4 of the paper draws the second-choice objective in red.
TOP_COLOUR, SECOND_COLOUR = "tab:blue", "tab:red"


# --------------------------------------------------------------------------------------------------
# Fig. 3: rubbish images
# --------------------------------------------------------------------------------------------------


def fig3_rubbish(
    images: Mapping[int, torch.Tensor],
    predicted: Mapping[int, torch.Tensor] | None = None,
    size: float = 0.95,
) -> Figure:
    """Fig. 3: one row per model ``n``, the 10 images ``images[n]`` (10, 784) obtained from the same noise
    by descending C^0 ... C^9. Every image is labelled with its target class (the paper labels them for
    n = 2, 3); with ``predicted[n]`` (10,) the label also gives the model's own classification when it
    differs from the target."""
    ns = list(images)
    fig, axes = plt.subplots(len(ns), 10, figsize=(10 * size + 0.6, len(ns) * (size + 0.22) + 0.2),
                             squeeze=False)
    for r, n in enumerate(ns):
        x = images[n]
        if len(x) != 10:
            raise ValueError(f"images[{n}] must hold 10 images (one per class), got {len(x)}")
        for a in range(10):
            label = f"{a}"
            if predicted is not None and int(predicted[n][a]) != a:
                label += f" (→{int(predicted[n][a])})"
            imshow_digit(axes[r, a], x[a], title=label)
        axes[r, 0].set_ylabel(f"$n = {n}$", fontsize=11, rotation=0, ha="right", va="center", labelpad=6)
    fig.subplots_adjust(left=0.07, right=0.995, top=0.96, bottom=0.01, wspace=0.06, hspace=0.3)
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. 4, top: log C^top and log C^second along the deformation
# --------------------------------------------------------------------------------------------------


def _crossing(gap: np.ndarray) -> int | None:
    """First step with ``D_top - D_second < 0`` (the first iterate behind the boundary), or None."""
    below = np.flatnonzero(np.nan_to_num(gap, nan=1.0) < 0)
    return int(below[0]) if below.size else None


def fig4_curves(
    curves: Mapping[int, Mapping[str, Any]],
    ncols: int = 4,
) -> Figure:
    """Fig. 4, top panel, one panel per model: ``log C^top`` (blue) and ``log C^second`` (red) against the
    iteration of eq. (5) on ``C^second``, with the crossing (decision boundary) marked.

    ``curves[n]``: ``log_c_top`` and ``log_c_second`` (L,) (NaN-padded, as in
    :class:`dam_utils.deform.DeformTrace`), ``gap`` (L,) ``D_top - D_second`` to locate the crossing, and
    optionally ``labels`` = (top, second) class labels for the legend.
    """
    ns = list(curves)
    ncols = max(1, min(ncols, len(ns)))
    nrows = math.ceil(len(ns) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.7 * nrows), squeeze=False)
    for k, n in enumerate(ns):
        ax = axes[k // ncols, k % ncols]
        c = curves[n]
        top = np.asarray(torch.as_tensor(c["log_c_top"]).double().cpu())
        sec = np.asarray(torch.as_tensor(c["log_c_second"]).double().cpu())
        keep = ~(np.isnan(top) | np.isnan(sec))
        steps = np.arange(len(top))[keep]
        labels = c.get("labels")
        lt = f"top choice ({labels[0]})" if labels else "top choice"
        ls = f"second choice ({labels[1]})" if labels else "second choice"
        ax.plot(steps, top[keep], color=TOP_COLOUR, lw=1.5, label=f"$\\log C$, {lt}")
        ax.plot(steps, sec[keep], color=SECOND_COLOUR, lw=1.5, label=f"$\\log C$, {ls}")
        cross = _crossing(np.asarray(torch.as_tensor(c["gap"]).double().cpu())) if "gap" in c else None
        if cross is not None:
            ax.axvline(cross, color="0.3", ls="--", lw=1.0)
            ax.annotate(f"crossing\nstep {cross}", xy=(cross, 0.5), xycoords=("data", "axes fraction"),
                        xytext=(4, 0), textcoords="offset points", fontsize=7, color="0.25")
        ax.set_title(f"$n = {n}$", fontsize=11)
        ax.set_xlabel("iteration of eq. (5)", fontsize=9)
        if k % ncols == 0:
            ax.set_ylabel("$\\log C$", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6.5, loc="best")
    for k in range(len(ns), nrows * ncols):
        axes[k // ncols, k % ncols].axis("off")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. 4, bottom: triplets clean / boundary / final
# --------------------------------------------------------------------------------------------------


def fig4_triplets(
    triplets: Mapping[int, Sequence[Mapping[str, Any]]],
    size: float = 0.95,
) -> Figure:
    """Fig. 4, bottom panel: one row per model ``n``, its triplets side by side. Each triplet is a mapping
    with ``clean``, ``boundary``, ``final`` images (784,) and ``top``, ``second`` labels; the images are
    titled "clean 7", "boundary 7|1", "final 1"."""
    ns = list(triplets)
    per = max((len(t) for t in triplets.values()), default=0)
    ncols = 3 * per + max(per - 1, 0)  # a blank spacer column between triplets
    fig, axes = plt.subplots(len(ns), max(ncols, 1), figsize=(max(ncols, 1) * size + 0.6,
                                                              len(ns) * (size + 0.25) + 0.1), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, n in enumerate(ns):
        for j, t in enumerate(triplets[n]):
            base = 4 * j
            names = (("clean", f"clean {t['top']}"), ("boundary", f"boundary {t['top']}|{t['second']}"),
                     ("final", f"final {t['second']}"))
            for k, (key, title) in enumerate(names):
                ax = axes[r, base + k]
                ax.axis("on")
                imshow_digit(ax, t[key])
                ax.set_title(title, fontsize=7.5, pad=2)
        axes[r, 0].axis("on")
        axes[r, 0].set_ylabel(f"$n = {n}$", fontsize=11, rotation=0, ha="right", va="center", labelpad=6)
    fig.subplots_adjust(left=0.07, right=0.995, top=0.95, bottom=0.01, wspace=0.06, hspace=0.32)
    return fig


# --------------------------------------------------------------------------------------------------
# Animation of the deformation (plays in the static site: to_jshtml)
# --------------------------------------------------------------------------------------------------


def animation_frames(n_steps: Sequence[int], max_frames: int = 40) -> list[list[int]]:
    """For trajectories of ``n_steps[j]`` stored snapshots, ``frames`` indices per panel: frame ``f`` shows
    snapshot ``round(f / (F - 1) * (n_steps[j] - 1))`` of panel ``j`` (F = min(max_frames, longest)).
    Every panel starts at its first snapshot and ends at its last. Returns ``[frame][panel]``."""
    if max_frames < 2:
        raise ValueError(f"max_frames must be >= 2, got {max_frames}")
    F = max(2, min(max_frames, max(n_steps, default=1)))
    return [[round(f / (F - 1) * (max(s, 1) - 1)) for s in n_steps] for f in range(F)]


def deformation_animation(
    trajectories: Mapping[int, Mapping[str, Any]],
    max_frames: int = 40,
    size: float = 1.6,
    interval_ms: int = 150,
    dpi: int = 72,
) -> FuncAnimation:
    """The deformation of one image per model as an animation, one panel per model.

    ``trajectories[n]``: ``snapshots`` (S, 784) (the image every few steps, NaN rows after the image
    stopped are dropped), ``steps`` (S,) the iteration of each snapshot, ``cross_step`` (int or None) and
    ``labels`` = (top, second). Frames are spread evenly over each trajectory (:func:`animation_frames`), at
    most ``max_frames``; a panel's title turns red once its image has crossed the decision boundary.
    :func:`animation_html` turns it into self-contained HTML + JavaScript (no network needed).
    """
    ns = list(trajectories)
    snaps, steps = [], []
    for n in ns:
        s = torch.as_tensor(trajectories[n]["snapshots"]).double().cpu()
        st = torch.as_tensor(trajectories[n]["steps"]).long().cpu()
        ok = ~torch.isnan(s).any(1)
        if not bool(ok.any()):
            raise ValueError(f"trajectory of n = {n} has no snapshot")
        snaps.append(s[ok].numpy())
        steps.append(st[ok].numpy())
    frames = animation_frames([len(s) for s in snaps], max_frames)
    fig, axes = plt.subplots(1, len(ns), figsize=(size * len(ns), size + 0.45), squeeze=False, dpi=dpi)
    ims, titles = [], []
    for j, n in enumerate(ns):
        ax = axes[0, j]
        ims.append(imshow_digit(ax, snaps[j][0]))
        titles.append(ax.set_title("", fontsize=8))
        top, sec = trajectories[n].get("labels", ("?", "?"))
        ax.set_xlabel(f"$n = {n}$: {top} → {sec}", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.82, bottom=0.16, wspace=0.1)

    def update(f: int) -> list[Any]:
        for j, n in enumerate(ns):
            k = frames[f][j]
            ims[j].set_data(snaps[j][k].reshape(28, 28))
            step = int(steps[j][k])
            cross = trajectories[n].get("cross_step")
            crossed = cross is not None and cross >= 0 and step >= cross
            titles[j].set_text(f"step {step}" + (" (crossed)" if crossed else ""))
            titles[j].set_color(SECOND_COLOUR if crossed else "black")
        return ims + titles

    update(0)
    anim = FuncAnimation(fig, update, frames=len(frames), interval=interval_ms, blit=False)
    plt.close(fig)  # the notebook shows the animation, not a stray static figure
    return anim


#: Unicode stand-ins for the Font Awesome icons of matplotlib's jshtml player buttons.
_PLAYER_ICONS = {
    "fa fa-minus": "\u2212", "fa fa-fast-backward": "\u23ee", "fa fa-step-backward": "\u25c2",
    "fa fa-play fa-flip-horizontal": "\u25c0", "fa fa-pause": "\u23f8", "fa fa-play": "\u25b6",
    "fa fa-step-forward": "\u25b8", "fa fa-fast-forward": "\u23ed", "fa fa-plus": "+",
}


def animation_html(anim: FuncAnimation) -> str:
    """``anim.to_jshtml()`` made fully offline: matplotlib's player loads Font Awesome from a CDN for
    its button icons; the ``<link>`` is dropped and each icon replaced by a Unicode symbol, so that the
    page requests nothing from the network (the book's site test forbids it)."""
    html = anim.to_jshtml()
    html = re.sub(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">\s*', "", html)

    def icon(m: re.Match[str]) -> str:
        return f"<span>{_PLAYER_ICONS.get(m.group(1), '')}</span>"

    return stable_ids(re.sub(r'<i class="(fa [^"]*)"></i>', icon, html))


def stable_ids(html: str) -> str:
    """Replace the random ``uuid4().hex`` that matplotlib's jshtml player uses to name its elements by a
    hash of the rest of the HTML, so that re-running a notebook reproduces its output exactly (nbval)."""
    ids = sorted(set(re.findall(r"_anim_img([0-9a-f]{32})", html)))
    for old in ids:
        new = hashlib.sha256(html.replace(old, "").encode()).hexdigest()[:32]
        html = html.replace(old, new)
    return html
