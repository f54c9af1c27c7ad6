"""dam_utils.widgets: the deformation explorer builds (from traces, or from the committed cache), its slider
spans the stored frames, moving the slider (or changing model / image) redraws the picture, and the box
deforms a new test image once."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

from dam_utils import plots
from dam_utils import widgets as W
from dam_utils.deform import DeformConfig, deform
from dam_utils.explorer_traces import EXPLORER_N, ImageTrace, traces_from_result
from dam_utils.rubbish import noise_images


@pytest.fixture(scope="module")
def traces(random_dam) -> dict[int, list[ImageTrace]]:
    x = noise_images(3, 0.5, seed=1)
    cfg = DeformConfig.smoke(eps=0.5, max_steps=60, patience=10)
    out = {}
    for n in (2, 3):
        res = deform(random_dam(n, seed=n), x, 2, cfg, trace=2, snapshot_every=1)
        out[n] = traces_from_result(res, index=[10, 11], labels=[0, 1], max_frames=6)
    return out


def test_image_png_is_grayscale_ink_black() -> None:
    v = torch.full((784,), -1.0)
    v[0] = 1.0
    v[1] = 0.0
    img = Image.open(BytesIO(W.image_png(v, scale=2)))
    assert img.size == (56, 56) and img.mode == "L"
    assert img.getpixel((0, 0)) == 0 and img.getpixel((10, 10)) == 255
    # the same grey as the figures' renderer draws for that pixel (one colour map for the whole book)
    fig, ax = plt.subplots()
    rgba = plots.imshow_digit(ax, v).to_rgba(v.reshape(28, 28).numpy())  # (28, 28, 4) in [0, 1]
    assert img.getpixel((2, 0)) == round(255 * float(rgba[0, 1, 0]))
    plt.close(fig)


def test_explorer_builds_and_slider_spans_the_frames(traces) -> None:
    ex = W.deformation_explorer(traces)
    assert [v for _, v in ex.model.options] == [2, 3]
    assert len(ex.image.options) == 2
    S = len(traces[2][0].steps)
    assert 2 <= S <= 6
    assert ex.step.min == 0 and ex.step.max == S - 1 == ex.n_frames() - 1
    assert ex.picture.value and "step 0" in ex.info.value and "test image #10" in ex.info.value
    assert not hasattr(ex, "deform_button")  # no compute function: no box


def test_slider_updates_the_image(traces) -> None:
    ex = W.deformation_explorer(traces)
    first = ex.picture.value
    ex.step.value = ex.step.max
    assert ex.picture.value != first
    assert f"step {int(traces[2][0].steps[-1])}" in ex.info.value
    assert ex.picture.value == W.image_png(traces[2][0].frames[-1])


def test_changing_model_and_image_resets_the_slider(traces) -> None:
    ex = W.deformation_explorer(traces)
    ex.step.value = ex.step.max
    ex.model.value = 3
    assert ex.step.value == 0 and ex.image.value == 0
    assert ex.picture.value == W.image_png(traces[3][0].frames[0])
    ex.image.value = 1
    assert ex.step.max == ex.n_frames() - 1
    assert ex.picture.value == W.image_png(traces[3][1].frames[0])


def test_deform_box_adds_and_shows_a_new_image(traces) -> None:
    calls = []

    def compute(n: int, i: int) -> ImageTrace:
        calls.append((n, i))
        return replace(traces[n][1], index=i)

    ex = W.DeformationExplorer(traces, compute)
    ex.model.value = 3
    ex.new_index.value = 42
    ex.deform_button.click()
    assert calls == [(3, 42)] and len(ex.image.options) == 3 and ex.image.value == 2
    assert "#42" in ex.image.label and "test image #42" in ex.info.value and "deformed" in ex.status.value
    ex.new_index.value = 42
    ex.deform_button.click()  # already there: selected, not computed again
    assert calls == [(3, 42)] and len(ex.image.options) == 3
    ex.model.value = 2
    assert len(ex.image.options) == 2  # per model
    assert ex.new_index.max == 9999


def test_explorer_needs_frames(traces) -> None:
    with pytest.raises(ValueError, match="no traces"):
        W.deformation_explorer({2: []})
    with pytest.raises(ValueError, match="no frames"):
        W.deformation_explorer({2: [replace(traces[2][0], steps=traces[2][0].steps[:0])]})


def test_explorer_opens_on_the_committed_cache() -> None:
    ex = W.deformation_explorer(on_demand=False)
    assert [v for _, v in ex.model.options] == list(EXPLORER_N)
    assert ex.picture.value and not hasattr(ex, "deform_button")
