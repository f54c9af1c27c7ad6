"""Interactive explorers for JupyterLab (chapter 3). The static site shows an animation instead
(:func:`dam_utils.figures_attacks.deformation_animation`); these need a live kernel.

:func:`deformation_explorer` scrubs through the stored snapshots of decision-boundary deformations
(:func:`dam_utils.deform.deform` with ``trace=...`` and ``snapshot_every=...``): a model dropdown, an
image selector and a step slider; the picture, the step, both objectives and the model's label at that
step are shown. Everything is precomputed: moving the slider only re-encodes a 28 x 28 image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
from IPython.display import display
from matplotlib.colors import Normalize
from PIL import Image as PILImage

from .plots import DIGIT_CMAP, as_digit

__all__ = ["DeformationExplorer", "deformation_explorer", "image_png"]


def image_png(v: torch.Tensor | np.ndarray, scale: int = 5) -> bytes:
    """A (784,) image with pixels in [-1, 1] as grayscale PNG bytes, through the colour map and scale of
    :func:`dam_utils.plots.imshow_digit` (ink, +1, black on white, -1), so the explorer shows exactly what
    the figures show; each pixel becomes a ``scale`` x ``scale`` block."""
    rgba = matplotlib.colormaps[DIGIT_CMAP](Normalize(-1.0, 1.0, clip=True)(as_digit(v)))  # (28, 28, 4)
    u8 = np.round(rgba[..., 0] * 255.0).astype(np.uint8)  # gray: R = G = B
    img = PILImage.fromarray(u8, mode="L").resize((28 * scale, 28 * scale), PILImage.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class DeformationExplorer:
    """The widgets of :func:`deformation_explorer`; ``.widget`` is the box to display.

    Attributes: ``model`` (Dropdown of n), ``image`` (Dropdown of traced images), ``step`` (IntSlider over
    the stored snapshots of the selected image: ``0 .. S - 1``), ``picture`` (Image), ``info`` (HTML).
    """

    def __init__(self, results: Mapping[int, Any], scale: int = 5) -> None:
        self.results: dict[int, Any] = {}
        for n, res in results.items():
            tr = getattr(res, "trace", None)
            if tr is None or tr.snapshots is None or len(tr.snapshot_steps) == 0:
                raise ValueError(f"result for n = {n} has no snapshots: run deform(..., trace=k, "
                                 "snapshot_every=s) with s >= 1")
            self.results[int(n)] = res
        if not self.results:
            raise ValueError("no results to explore")
        self.scale = scale
        first = next(iter(self.results))
        self.model = widgets.Dropdown(options=[(f"n = {n}", n) for n in self.results], value=first,
                                      description="model")
        self.image = widgets.Dropdown(description="image")
        self.step = widgets.IntSlider(min=0, max=0, value=0, description="snapshot", continuous_update=True)
        self.picture = widgets.Image(format="png", width=28 * scale, height=28 * scale)
        self.info = widgets.HTML()
        self._image_options()
        self.model.observe(lambda _: self._image_options(), names="value")
        self.image.observe(lambda _: self._reset_slider(), names="value")
        self.step.observe(lambda _: self._draw(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.model, self.image]), self.step,
                                    widgets.HBox([self.picture, self.info])])

    # -- state --------------------------------------------------------------------------------------
    def _valid(self, n: int, j: int) -> np.ndarray:
        """Positions of the snapshots of traced image ``j`` of model ``n`` that exist (not NaN padding)."""
        snaps = self.results[n].trace.snapshots[j]
        return np.flatnonzero(~torch.isnan(snaps).any(1).numpy())

    def n_snapshots(self) -> int:
        """Number of stored snapshots of the selected image."""
        return len(self._valid(self.model.value, self.image.value))

    def _image_options(self) -> None:
        res = self.results[self.model.value]
        idx = res.trace.index.tolist()
        opts = [(f"#{i}: {int(res.top[i])} → {int(res.second[i])}", j) for j, i in enumerate(idx)]
        self.image.options = opts
        self.image.value = 0
        self._reset_slider()  # also when the value did not change (no event fired)

    def _reset_slider(self) -> None:
        S = self.n_snapshots()
        self.step.value = 0
        self.step.max = max(S - 1, 0)
        self._draw()

    def _draw(self) -> None:
        n, j = self.model.value, self.image.value
        res = self.results[n]
        tr = res.trace
        pos = self._valid(n, j)
        if len(pos) == 0:
            self.info.value = "no snapshot stored for this image"
            return
        s = int(pos[min(self.step.value, len(pos) - 1)])
        step = int(tr.snapshot_steps[s])
        i = int(tr.index[j])
        v = tr.snapshots[j, s]
        self.picture.value = image_png(v, self.scale)
        lt, ls = float(tr.log_c_top[j, step]), float(tr.log_c_second[j, step])
        cross = int(res.cross_step[i])
        crossed = cross >= 0 and step >= cross
        dist = float((v.double() - res.clean[i].double()).norm())
        where = ("behind the decision boundary" if crossed else "before the decision boundary")
        self.info.value = (
            f"<b>step {step}</b> ({where}; crossing at step {cross if cross >= 0 else '–'})<br>"
            f"top choice {int(res.top[i])}: log C<sup>top</sup> = {self._fmt(lt)}<br>"
            f"second choice {int(res.second[i])}: log C<sup>second</sup> = {self._fmt(ls)}<br>"
            f"distance from the clean image: {dist:.2f}"
        )

    @staticmethod
    def _fmt(x: float) -> str:
        return "–" if math.isnan(x) else f"{x:.3g}"

    def _ipython_display_(self) -> None:
        display(self.widget)


def deformation_explorer(results: Mapping[int, Any], scale: int = 5) -> DeformationExplorer:
    """A model dropdown, an image selector and a step slider over the stored snapshots of
    ``results[n]`` (:class:`dam_utils.deform.DeformResult` with a trace and snapshots). Display the
    returned object (or its ``.widget``) in JupyterLab."""
    return DeformationExplorer(results, scale)
