"""dam_utils.widgets: the deformation explorer builds, its slider spans the stored snapshots, and moving
the slider (or changing model / image) redraws the picture."""

from __future__ import annotations

from io import BytesIO

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

from dam_utils import plots
from dam_utils import widgets as W
from dam_utils.deform import DeformConfig, DeformResult, deform
from dam_utils.rubbish import noise_images


@pytest.fixture(scope="module")
def results(random_dam) -> dict[int, DeformResult]:
    x = noise_images(3, 0.5, seed=1)
    cfg = DeformConfig.smoke(eps=0.5, max_steps=60, patience=10)
    return {n: deform(random_dam(n, seed=n), x, 2, cfg, trace=2, snapshot_every=3) for n in (2, 3)}


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


def test_explorer_builds_and_slider_spans_the_snapshots(results) -> None:
    ex = W.deformation_explorer(results)
    assert [v for _, v in ex.model.options] == [2, 3]
    assert len(ex.image.options) == 2
    tr = results[2].trace
    S = int((~torch.isnan(tr.snapshots[0]).any(1)).sum())
    assert S >= 2
    assert ex.step.min == 0 and ex.step.max == S - 1 == ex.n_snapshots() - 1
    assert ex.picture.value and "step 0" in ex.info.value


def test_slider_updates_the_image(results) -> None:
    ex = W.deformation_explorer(results)
    first = ex.picture.value
    ex.step.value = ex.step.max
    assert ex.picture.value != first
    s = int(results[2].trace.snapshot_steps[ex.step.max])
    assert f"step {s}" in ex.info.value
    assert ex.picture.value == W.image_png(results[2].trace.snapshots[0, ex.step.max])


def test_changing_model_and_image_resets_the_slider(results) -> None:
    ex = W.deformation_explorer(results)
    ex.step.value = ex.step.max
    ex.model.value = 3
    assert ex.step.value == 0 and ex.image.value == 0
    assert ex.picture.value == W.image_png(results[3].trace.snapshots[0, 0])
    ex.image.value = 1
    assert ex.step.max == ex.n_snapshots() - 1
    assert ex.picture.value == W.image_png(results[3].trace.snapshots[1, 0])


def test_explorer_needs_snapshots(random_dam) -> None:
    x = noise_images(2, 0.5, seed=1)
    res = deform(random_dam(2), x, 2, DeformConfig.smoke(eps=0.5), trace=1, snapshot_every=0)
    with pytest.raises(ValueError, match="snapshots"):
        W.deformation_explorer({2: res})
