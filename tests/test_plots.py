"""dam_utils.plots: every figure builds; Fig. 2 uses the paper's colour scale and a colour bar."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from dam_utils import metrics, plots
from dam_utils.model import DAM, N_CLASSES, N_PIXELS


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _model(n: int, K: int = 30, seed: int = 0) -> DAM:
    gen = torch.Generator().manual_seed(seed)
    xi = torch.rand(K, N_PIXELS, generator=gen) * 2 - 1
    return DAM(xi, torch.rand(K, N_CLASSES, generator=gen) * 2 - 1, n, 50.0)


def test_architecture_figure() -> None:
    fig = plots.architecture_figure(K=2000)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "784" in texts and "2000" in texts and "x_\\alpha = -1" in texts and "(1)" in texts


def test_training_curves() -> None:
    curve = [{"epoch": e, "train_error": 50 / e, "test_error": 40 / e} for e in range(1, 6)]
    hist = {n: [dict(r) for r in curve] for n in (2, 30)}
    hist[2][0]["train_error"] = 0.0  # a zero on a log axis must not break the plot
    fig = plots.training_curves(hist)
    ax_tr, ax_te = fig.axes[:2]
    assert ax_tr.get_yscale() == "log" and ax_te.get_yscale() == "log"
    assert len(ax_tr.lines) == 2
    dashed = [ln for ln in ax_te.lines if ln.get_linestyle() == "--"]
    assert sorted(round(ln.get_ydata()[0], 2) for ln in dashed) == [1.51, 1.80]


def test_fig2_colour_scale_and_colorbar() -> None:
    models = {n: _model(n, seed=n) for n in (2, 3, 20, 30)}
    fig = plots.fig2(models)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 4
    for ax in image_axes:
        im = ax.images[0]
        assert im.get_cmap().name.startswith("bwr")
        assert im.norm.vmin == -1.0 and im.norm.vmax == 1.0
    assert image_axes[0].images[0].colorbar is not None  # one shared colour bar
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in image_axes] == ["$n = 2$", "$n = 3$", "$n = 20$", "$n = 30$"]
    three = plots.fig2({n: models[n] for n in (2, 3, 20)}, ncols=4)
    assert len([ax for ax in three.axes if ax.images]) == 3


def test_memories_grid_is_seeded_and_shows_the_weights() -> None:
    model = _model(2, K=100)
    m1, idx1 = plots.memory_mosaic(model, 25, seed=0)
    m2, idx2 = plots.memory_mosaic(model, 25, seed=0)
    _, idx3 = plots.memory_mosaic(model, 25, seed=1)
    assert idx1 == idx2 and idx1 != idx3 and len(set(idx1)) == 25
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(m1[:28, :28], model.xi[idx1[0]].reshape(28, 28).numpy())
    fig = plots.memories_grid(model)
    im = fig.axes[0].images[0]
    assert im.get_cmap().name.startswith("bwr") and (im.norm.vmin, im.norm.vmax) == (-1.0, 1.0)
    assert im.colorbar is not None
    # fewer memories than panels: all of them, no error
    _, idx = plots.memory_mosaic(_model(2, K=7), 25)
    assert sorted(idx) == list(range(7))


def test_specialisation_plot() -> None:
    models = {n: _model(n, seed=n) for n in (2, 30)}
    spec = {n: metrics.class_specialisation(m) for n, m in models.items()}
    x = torch.rand(20, N_PIXELS) * 2 - 1
    contrib = {n: metrics.contributors_per_decision(m, x) for n, m in models.items()}
    fig = plots.specialisation_plot(spec, contrib, baseline=spec[2])
    assert len(fig.axes) == 3
    assert sum(ln.get_linestyle() == "--" for ln in fig.axes[0].lines) >= 2  # the two baselines
    assert len(plots.specialisation_plot(spec).axes) == 2


def test_imshow_digit_draws_ink_black_on_white() -> None:
    v = torch.full((784,), -1.0)
    v[:28] = 1.0  # the first row is ink
    _, ax = plt.subplots()
    im = plots.imshow_digit(ax, v, title="7")
    assert im.get_cmap().name == plots.DIGIT_CMAP and (im.norm.vmin, im.norm.vmax) == (-1.0, 1.0)
    rgba = im.to_rgba(im.get_array())  # (28, 28, 4)
    assert tuple(rgba[0, 0, :3]) == (0.0, 0.0, 0.0) and tuple(rgba[1, 0, :3]) == (1.0, 1.0, 1.0)
    assert ax.get_title() == "7" and list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    np.testing.assert_array_equal(plots.imshow_digit(ax, v.reshape(28, 28).numpy()).get_array(), im.get_array())
