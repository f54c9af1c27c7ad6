"""dam_utils.figures_attacks: Figs. 3 and 4 and the deformation animation build, deterministically, on the
book's grayscale scale."""

from __future__ import annotations

import io
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from dam_utils import figures_attacks as FA
from dam_utils.deform import DeformConfig, DeformResult, deform
from dam_utils.plots import DIGIT_CMAP
from dam_utils.rubbish import noise_images


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def results(random_dam) -> dict[int, DeformResult]:
    x = noise_images(3, 0.5, seed=1)
    cfg = DeformConfig.smoke(eps=0.5, max_steps=60, patience=10)
    return {n: deform(random_dam(n, seed=n), x, 2, cfg, trace=1, snapshot_every=2) for n in (2, 30)}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40, metadata={"Software": None})
    return buf.getvalue()


def _images(seed: int) -> torch.Tensor:
    return torch.rand(10, 784, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_fig3_grid_scale_and_labels() -> None:
    images = {n: _images(n) for n in (2, 3, 20, 30)}
    pred = {n: torch.arange(10) for n in images}
    pred[2] = pred[2].clone()
    pred[2][4] = 9
    fig = FA.fig3_rubbish(images, predicted=pred)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 40
    for ax in axes:
        im = ax.images[0]
        assert im.norm.vmin == -1.0 and im.norm.vmax == 1.0
        assert im.get_cmap().name == DIGIT_CMAP
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:10] == ["0", "1", "2", "3", "4 (→9)", "5", "6", "7", "8", "9"]
    assert titles[10:20] == [str(a) for a in range(10)]
    assert fig.axes[0].get_ylabel() == "$n = 2$" and fig.axes[30].get_ylabel() == "$n = 30$"
    np.testing.assert_allclose(fig.axes[13].images[0].get_array(), images[3][3].reshape(28, 28).numpy())
    with pytest.raises(ValueError, match="10 images"):
        FA.fig3_rubbish({2: _images(0)[:5]})


def test_fig3_is_deterministic() -> None:
    images = {n: _images(n) for n in (2, 30)}
    assert _png(FA.fig3_rubbish(images)) == _png(FA.fig3_rubbish(images))


def test_fig4_curves_mark_the_crossing() -> None:
    L = 30
    t = torch.linspace(-5, 0, L, dtype=torch.float64)
    s = torch.linspace(0, -8, L, dtype=torch.float64)
    gap = torch.linspace(1, -1, L, dtype=torch.float64)  # crosses between steps 14 and 15
    pad = torch.full((5,), float("nan"), dtype=torch.float64)
    curves = {n: {"log_c_top": torch.cat([t, pad]), "log_c_second": torch.cat([s, pad]),
                  "gap": torch.cat([gap, pad]), "labels": (7, 1)} for n in (2, 3, 20)}
    fig = FA.fig4_curves(curves)
    ax = fig.axes[0]
    red = [ln for ln in ax.lines if ln.get_color() == FA.SECOND_COLOUR]
    assert len(red) == 1 and len(red[0].get_xdata()) == L  # NaN padding dropped
    vlines = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(vlines) == 1 and vlines[0].get_xdata()[0] == 15
    assert "second choice (1)" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert [a.get_title() for a in fig.axes if a.lines] == ["$n = 2$", "$n = 3$", "$n = 20$"]


def test_fig4_curves_from_a_real_trace(results) -> None:
    """The plotted curves are the trace's values, step by step, and the dashed line sits at the image's
    crossing step."""
    r = results[2]
    tr = r.trace
    fig = FA.fig4_curves({2: {"log_c_top": tr.log_c_top[0], "log_c_second": tr.log_c_second[0],
                              "gap": tr.gap[0]}})
    ax = fig.axes[0]
    top = next(ln for ln in ax.lines if ln.get_color() == FA.TOP_COLOUR)
    sec = next(ln for ln in ax.lines if ln.get_color() == FA.SECOND_COLOUR)
    L = int((~tr.log_c_top[0].isnan()).sum())
    np.testing.assert_array_equal(top.get_xdata(), np.arange(L))
    np.testing.assert_allclose(top.get_ydata(), tr.log_c_top[0][:L].numpy())
    np.testing.assert_allclose(sec.get_ydata(), tr.log_c_second[0][:L].numpy())
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    if bool(r.crossed[0]):
        assert len(dashed) == 1 and dashed[0].get_xdata()[0] == int(r.cross_step[0])
    else:
        assert not dashed


def test_fig4_triplets_layout(results) -> None:
    trip = {n: [{"clean": r.clean[i], "boundary": r.boundary[i], "final": r.final[i],
                 "top": int(r.top[i]), "second": int(r.second[i])} for i in range(3)]
            for n, r in results.items()}
    fig = FA.fig4_triplets(trip)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * 9
    r = results[2]
    titles = [ax.get_title() for ax in shown[:3]]
    assert titles == [f"clean {int(r.top[0])}", f"boundary {int(r.top[0])}|{int(r.second[0])}",
                      f"final {int(r.second[0])}"]
    np.testing.assert_allclose(shown[1].images[0].get_array(), r.boundary[0].reshape(28, 28).double().numpy())
    assert all(ax.images[0].norm.vmin == -1.0 for ax in shown)


def test_animation_frames_cover_each_trajectory() -> None:
    frames = FA.animation_frames([5, 100], max_frames=40)
    assert len(frames) == 40
    assert frames[0] == [0, 0] and frames[-1] == [4, 99]
    assert all(a <= b for a, b in zip([f[1] for f in frames], [f[1] for f in frames[1:]], strict=False))
    assert len(FA.animation_frames([3, 4], max_frames=40)) == 4
    with pytest.raises(ValueError):
        FA.animation_frames([3], max_frames=1)


def test_deformation_animation(results) -> None:
    traj = {}
    for n, r in results.items():
        tr = r.trace
        traj[n] = {"snapshots": tr.snapshots[0], "steps": tr.snapshot_steps, "cross_step": int(r.cross_step[0]),
                   "labels": (int(r.top[0]), int(r.second[0]))}
    anim = FA.deformation_animation(traj, max_frames=8, size=1.0, dpi=30)
    html = FA.animation_html(anim)
    assert "<script" in html and "data:image/png;base64" in html
    assert html.count("data:image/png;base64") <= 8
    assert "http://" not in html and "https://" not in html and "<link" not in html  # plays offline
    assert 'class="fa' not in html and "\u25b6" in html  # the play button keeps a symbol
    anim2 = FA.deformation_animation(traj, max_frames=8, size=1.0, dpi=30)
    frames = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=\\n]+")
    assert FA.animation_html(anim2) == html  # deterministic, element ids included (nbval)
    assert len(frames.findall(html)) >= 2
