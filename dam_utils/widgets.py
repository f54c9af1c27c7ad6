"""Interactive explorers for JupyterLab (chapter 3). The static site shows an animation instead
(:func:`dam_utils.figures_attacks.deformation_animation`); these need a live kernel.

:func:`deformation_explorer` scrubs through decision-boundary deformations (section 4, eq. (5)): a model
dropdown, an image selector and a frame slider; the picture, the step, both objectives and the distance from
the clean image are shown. It opens on the traces cached by :mod:`dam_utils.explorer_traces` (seconds, none
of the chapter's cells needed); moving the slider only re-encodes a 28 x 28 image. A box below deforms any
other test image with the committed model, in a second or a few.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
from IPython.display import display
from matplotlib.colors import Normalize
from PIL import Image as PILImage

from .explorer_traces import ImageTrace, committed_tracer, load_explorer_traces
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

    Attributes: ``model`` (Dropdown of n), ``image`` (Dropdown of the model's traced images), ``step``
    (IntSlider over the stored frames of the selected image: ``0 .. S - 1``), ``picture`` (Image), ``info``
    (HTML); with ``compute``: ``new_index`` (a test-set index), ``deform_button`` and ``status``.
    """

    def __init__(self, traces: Mapping[int, Sequence[ImageTrace]],
                 compute: Callable[[int, int], ImageTrace] | None = None, n_test: int = 10000, scale: int = 5) -> None:
        self.traces: dict[int, list[ImageTrace]] = {int(n): list(ts) for n, ts in traces.items()}
        if not self.traces or not all(self.traces.values()):
            raise ValueError("no traces to explore: every model needs at least one ImageTrace")
        for n, ts in self.traces.items():
            if any(len(t.steps) == 0 for t in ts):
                raise ValueError(f"a trace of n = {n} has no frames")
        self.scale, self.compute = scale, compute
        first = next(iter(self.traces))
        self.model = widgets.Dropdown(options=[(f"n = {n}", n) for n in self.traces], value=first,
                                      description="model")
        self.image = widgets.Dropdown(description="image")
        self.step = widgets.IntSlider(min=0, max=0, value=0, description="frame", continuous_update=True)
        self.picture = widgets.Image(format="png", width=28 * scale, height=28 * scale)
        self.info = widgets.HTML()
        self._image_options()
        self.model.observe(lambda _: self._image_options(), names="value")
        self.image.observe(lambda _: self._reset_slider(), names="value")
        self.step.observe(lambda _: self._draw(), names="value")
        rows = [widgets.HBox([self.model, self.image]), self.step, widgets.HBox([self.picture, self.info])]
        if compute is not None:
            self.new_index = widgets.BoundedIntText(value=0, min=0, max=n_test - 1, description="test image")
            self.deform_button = widgets.Button(description="deform it", tooltip="deform this test image here")
            self.status = widgets.HTML()
            self.deform_button.on_click(lambda _: self.add_image(self.new_index.value))
            rows.append(widgets.HBox([self.new_index, self.deform_button, self.status]))
        self.widget = widgets.VBox(rows)

    # -- state --------------------------------------------------------------------------------------
    def current(self) -> ImageTrace:
        return self.traces[self.model.value][self.image.value]

    def n_frames(self) -> int:
        """Number of stored frames of the selected image."""
        return len(self.current().steps)

    def add_image(self, index: int) -> None:
        """Deform test image ``index`` with the selected model (``compute``) and show it."""
        if self.compute is None:
            raise RuntimeError("this explorer was built without a compute function")
        n, ts = self.model.value, self.traces[self.model.value]
        known = [j for j, t in enumerate(ts) if t.index == index]
        if not known:
            self.status.value = f"deforming test image #{index} with n = {n} ..."
            t0 = time.perf_counter()
            ts.append(self.compute(n, index))
            known = [len(ts) - 1]
            self.status.value = f"test image #{index} deformed in {time.perf_counter() - t0:.1f} s"
        self._image_options(select=known[0])

    def _image_options(self, select: int = 0) -> None:
        ts = self.traces[self.model.value]
        self.image.options = [(f"#{t.index}: {t.top} → {t.second}", j) for j, t in enumerate(ts)]
        self.image.value = select
        self._reset_slider()  # also when the value did not change (no event fired)

    def _reset_slider(self) -> None:
        self.step.value = 0
        self.step.max = self.n_frames() - 1
        self._draw()

    def _draw(self) -> None:
        t = self.current()
        s = min(self.step.value, len(t.steps) - 1)
        step = int(t.steps[s])
        self.picture.value = image_png(t.frames[s], self.scale)
        crossed = t.cross_step >= 0 and step >= t.cross_step
        where = "behind the decision boundary" if crossed else "before the decision boundary"
        dist = float(np.linalg.norm(t.frames[s].astype(np.float64) - t.frames[0]))
        self.info.value = (
            f"<b>step {step}</b> ({where}; crossing at step {t.cross_step if t.cross_step >= 0 else '–'})<br>"
            f"test image #{t.index}, a {t.label}<br>"
            f"top choice {t.top}: log C<sup>top</sup> = {self._fmt(t.log_c_top[step])}<br>"
            f"second choice {t.second}: log C<sup>second</sup> = {self._fmt(t.log_c_second[step])}<br>"
            f"distance from the clean image: {dist:.2f}"
        )

    @staticmethod
    def _fmt(x: float) -> str:
        return "–" if math.isnan(x) else f"{x:.3g}"

    def _ipython_display_(self) -> None:
        display(self.widget)


def deformation_explorer(traces: Mapping[int, Sequence[ImageTrace]] | None = None, *, on_demand: bool = True,
                         device: str = "cpu", scale: int = 5) -> DeformationExplorer:
    """A model dropdown, an image selector and a frame slider over deformation traces
    (:class:`dam_utils.explorer_traces.ImageTrace`). With no ``traces``: the cached traces of the committed
    book models (``artifacts/results/ch3_explorer_traces``; opens in seconds, refused when stale), and with
    ``on_demand`` a box that deforms any other test image with the committed model. Display the returned
    object (or its ``.widget``) in JupyterLab."""
    compute = None
    if traces is None:
        traces, doc = load_explorer_traces()
        compute = committed_tracer(doc, device) if on_demand else None
    return DeformationExplorer(traces, compute, scale=scale)
