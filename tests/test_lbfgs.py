"""dam_utils.lbfgs: Szegedy's box-constrained L-BFGS attack (appendix B): the objective's gradient against finite
differences, results inside the pixel box that reach their target, the search over c, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import check_grad

from dam_utils.cnn import CNNConfig, train_cnn
from dam_utils.lbfgs import LBFGSConfig, lbfgs_adversarial, objective
from dam_utils.params import ParameterError


@pytest.fixture(scope="module")
def cnn(mnist):
    net, _, _ = train_cnn(CNNConfig.smoke(n_train=5000), mnist, progress=False)
    return net


def _image(mnist, i: int) -> tuple[np.ndarray, int]:
    return ((mnist.x_train[i] + 1) / 2).numpy().astype(np.float64), int(mnist.y_train[i])


def test_objective_gradient_matches_finite_differences(cnn, mnist) -> None:
    x, _ = _image(mnist, 0)
    f = objective(cnn, x, 3, 0.1)
    r0 = np.random.default_rng(0).normal(0, 0.01, 784)
    err = check_grad(lambda r: f(r)[0], lambda r: f(r)[1], r0)
    assert err <= 1e-4 * max(1.0, np.linalg.norm(f(r0)[1]))


@pytest.mark.parametrize("i", [0, 1, 2])
def test_result_stays_in_the_box_and_reaches_its_target(cnn, mnist, i: int) -> None:
    x, y = _image(mnist, i)
    target = (y + 1 + i) % 10
    res = lbfgs_adversarial(cnn, x, target, LBFGSConfig.cpu(bisect_steps=3))
    assert res.success and res.target == target
    assert res.x_adv.min() >= 0.0 and res.x_adv.max() <= 1.0
    with torch.no_grad():
        p = torch.softmax(cnn(torch.from_numpy(res.x_adv).unsqueeze(0)), 1)[0]
    assert int(p.argmax()) == target and res.p_target == pytest.approx(float(p[target]))
    r = res.x_adv.astype(np.float64) - x
    assert res.l2 == pytest.approx(np.linalg.norm(r), rel=1e-5) and res.linf == pytest.approx(np.abs(r).max(), rel=1e-5)
    assert 0 < res.c <= LBFGSConfig.cpu().c_start and res.solves >= 1


def test_ten_times_the_penalty_kept_does_not_reach_the_target(cnn, mnist) -> None:
    """The search keeps the largest c that reaches the target: 10 c (tried before it) does not reach it."""
    x, y = _image(mnist, 3)
    res = lbfgs_adversarial(cnn, x, (y + 4) % 10, LBFGSConfig.cpu(bisect_steps=0))
    assert res.success and res.c * 10 <= LBFGSConfig.cpu().c_start, "c_start itself reached the target"
    again = lbfgs_adversarial(cnn, x, (y + 4) % 10, LBFGSConfig.cpu(c_start=res.c * 10, c_min=res.c * 5))
    assert not again.success


def test_bad_arguments(cnn) -> None:
    with pytest.raises(ValueError, match="784"):
        lbfgs_adversarial(cnn, np.full(784, 1.5), 3)
    with pytest.raises(ValueError, match="target"):
        lbfgs_adversarial(cnn, np.zeros(784), 10)
    with pytest.raises(ParameterError, match="'memory'"):
        LBFGSConfig.cpu(memory=0)
