"""dam_utils.rubbish: rubbish images of section 3 (eq. (5) on C^alpha from noise), and their stalls."""

from __future__ import annotations

import math

import pytest
import torch

from dam_utils import descent as S
from dam_utils import objectives as O
from dam_utils import rubbish as rb
from dam_utils.model import DAM

# many tiny tensor ops: one intra-op thread (tests/conftest.py); small_model comes from there too
pytestmark = pytest.mark.usefixtures("one_thread")


# --- rubbish images (section 3) ----------------------------------------------------------------------------


def test_rubbish_lowers_the_objective_and_stays_in_the_box(small_model: DAM) -> None:
    cfg = rb.RubbishConfig.smoke(max_steps=60, patience=20, eps=0.2)
    res = rb.generate_rubbish(small_model, 3, 2, cfg, seed=0)
    assert res.images.shape == (20, 784) and res.target.tolist() == list(range(10)) * 2
    assert torch.equal(res.start[0], res.start[9])  # shared noise: one seed -> 10 classes
    assert res.images.min() >= -1 and res.images.max() <= 1
    assert torch.all(res.log_objective < res.start_log_objective - 0.5)
    assert torch.all(res.steps <= cfg.max_steps)
    assert (small_model.predict(res.images) == res.target).float().mean() >= 0.9
    s = res.summary()
    assert s["images"] == 20 and s["converged_tol"] + s["plateau"] + s["max_steps"] == 20
    # the noise really has std noise_std (before clipping: 0.16 % of pixels are clipped)
    assert abs(res.start.std().item() - math.sqrt(0.1)) < 0.02


def test_rubbish_without_clipping_may_leave_the_box(small_model: DAM) -> None:
    res = rb.generate_rubbish(small_model, 3, 1, rb.RubbishConfig.smoke(max_steps=40, clip=False, eps=0.5))
    assert res.images.abs().max() > 1


def test_float64_fallback_moves_images_where_float32_underflows(mnist) -> None:
    # n = 30 at a high temperature: relu(x / T)^29 of a noise image is far below the float32 range
    idx = torch.cat([torch.nonzero(mnist.y_train == c).squeeze(1)[:5] for c in range(10)])
    xi = mnist.x_train[idx]
    xc = -torch.ones(50, 10)
    xc[torch.arange(50), mnist.y_train[idx]] = 1.0
    model = DAM(xi, xc, 30, 3000.0)
    start = rb.noise_images(10, 0.1, 0)  # xi.v small: every relu argument ~ 8 > 0, (8 / 3000)^29 ~ 1e-74
    on = rb.generate_rubbish(model, 30, 1, rb.RubbishConfig.smoke(max_steps=5), start=start)
    no64 = rb.RubbishConfig.smoke(max_steps=5, float64_fallback=False)
    off = rb.generate_rubbish(model, 30, 1, no64, start=start)
    assert (on.underflow > 0).all() and (on.zero_gradient == 0).all()
    assert (on.images - start).norm(dim=1).min() > 0.1  # moved (5 steps of 0.1, not all in one direction)
    assert (off.zero_gradient > 0).all() and torch.equal(off.images, start)  # reported, not hidden


# --- decision-boundary deformations (section 4) -------------------------------------------------------


def test_stalled_descents_are_flagged_and_counted() -> None:
    """A start where no memory is active (every argument of F_n <= 0): D and the gradient are exactly 0, the
    image cannot move. Such descents are marked ``stalled`` (status STALLED), counted apart from the rest,
    and left unchanged; descents from an image that does activate memories are not."""
    xi = torch.ones(3, 784)
    xc = torch.tensor([[0.5, -0.5] * 5] * 3)
    model = DAM(xi, xc, 3, 100.0)  # a_mu = xi.v: -784 on a white image, +392 on a grey one
    start = torch.cat([torch.full((10, 784), -1.0), torch.full((10, 784), 0.5)])
    res = rb.generate_rubbish(model, 2, 2, rb.RubbishConfig.smoke(max_steps=50, patience=10), start=start)
    assert (model.energy_difference(start[:10]) == 0).all()
    assert res.stalled.tolist() == [True] * 10 + [False] * 10
    assert torch.all(res.status[:10] == S.STALLED) and not (res.status[10:] == S.STALLED).any()
    assert torch.equal(res.images[:10], start[:10])  # nothing to follow: the image never moved
    assert not res.converged[:10].any()
    s = res.summary()
    assert s["stalled"] == 10
    assert s["converged_tol"] + s["plateau"] + s["max_steps"] + s["stalled"] == 20
    assert not torch.equal(res.images[10:], start[10:])  # the live ones moved
    assert torch.all(res.log_objective[10:] < res.start_log_objective[10:])
    assert O.log_objective(torch.zeros(1, 10), 0, 2).item() == pytest.approx(math.log(10.0))  # C = 10 when flat
