"""dam_utils.fgsm: the sign of the true loss gradient, the step's invariants, and refusal of bad step sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dam_utils.fgsm import check_epsilons, fgsm_direction, fgsm_images
from dam_utils.objectives import naive_objective
from dam_utils.params import ParameterError
from dam_utils.polynet import PolyNet


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def test_ce_direction_is_the_sign_of_the_autograd_gradient() -> None:
    torch.manual_seed(0)
    net = PolyNet(2, 30, T=10.0).double()
    x, y = _images(), torch.arange(8) % 10
    v = x.clone().requires_grad_(True)
    nn.functional.cross_entropy(net(v), y, reduction="sum").backward()
    d = fgsm_direction(net, x, y)
    assert torch.equal(d.sign, torch.sign(v.grad))
    assert not d.zero_gradient.any()


def test_dam_direction_is_the_sign_of_eq4_gradient(random_dam) -> None:
    model = random_dam(3, K=20)
    twin = type(model)(model.xi.double(), model.xc.double(), model.n, model.T)
    x, y = _images(), torch.arange(8) % 10
    v = x.clone().requires_grad_(True)
    naive_objective(twin.energy_difference(v), y, 2).sum().backward()
    d = fgsm_direction(model, x.float(), y, m=2)
    agree = (d.sign == torch.sign(v.grad).float()) | (v.grad.abs() < 1e-12 * v.grad.abs().amax(1, keepdim=True))
    assert agree.all()


def test_saturated_large_n_model_still_gets_a_direction(random_dam) -> None:
    """At n = 30 the naive gradient of eq. (4) is exactly zero once tanh saturates; FGSM's direction is not."""
    model = random_dam(30, K=20)
    model.T = 2.0  # |D| in the thousands: tanh(D) == +-1 in float32
    x, y = _images().float(), torch.arange(8) % 10
    d = fgsm_direction(model, x, y, m=30)
    frac_zero = float(d.zero_gradient.float().mean())
    assert frac_zero < 1.0
    assert int(d.zero_gradient.sum()) == int((d.sign == 0).all(1).sum())


def test_fgsm_images_stay_in_the_box_and_within_eps() -> None:
    x = _images().float()
    net = PolyNet(1, 20).float()
    d = fgsm_direction(net, x, torch.zeros(8, dtype=torch.long))
    for eps in (0.0, 0.1, 0.3):
        adv = fgsm_images(x, d, eps)
        assert adv.min() >= -1 and adv.max() <= 1
        assert (adv - x).abs().max() <= 2 * eps + 1e-6


@pytest.mark.parametrize("bad", [[], [0.0], [1.5], [-0.1], [float("nan")]])
def test_bad_step_sizes_are_refused(bad) -> None:
    with pytest.raises(ParameterError, match="fgsm_eps"):
        check_epsilons(bad)


def test_bad_m_and_eps_are_refused() -> None:
    x = _images(2).float()
    with pytest.raises(ParameterError, match="'m'"):
        fgsm_direction(PolyNet(1, 5), x, torch.zeros(2, dtype=torch.long), m=0)
    with pytest.raises(ParameterError, match="eps"):
        fgsm_images(x, fgsm_direction(PolyNet(1, 5), x, torch.zeros(2, dtype=torch.long)), 2.0)


def test_a_dam_loss_network_is_attacked_through_eq4() -> None:
    """A network trained with the DAM's objective gets the sign of eq. (4)'s gradient, not cross-entropy's."""
    torch.manual_seed(2)
    net = PolyNet(1, 30, loss="dam").double()
    x, y = _images(), torch.arange(8) % 10
    v = x.clone().requires_grad_(True)
    naive_objective(net(v), y, 3).sum().backward()
    assert torch.equal(fgsm_direction(net, x, y, m=3).sign, torch.sign(v.grad))
