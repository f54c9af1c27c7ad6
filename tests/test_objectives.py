"""dam_utils.objectives and dam_utils.descent: the stable objective of eq. (4), the direction of its gradient
(eq. (5)) where the textbook path underflows, and the per-step direction with its diagnostics."""

from __future__ import annotations

import math

import pytest
import torch

from dam_utils import descent as S
from dam_utils import objectives as obj
from dam_utils.model import DAM

# many tiny tensor ops: one intra-op thread (tests/conftest.py); small_model comes from there too
pytestmark = pytest.mark.usefixtures("one_thread")


def _saturated(model: DAM, dtype: torch.dtype = torch.float32) -> DAM:
    """The same classifier at T / 10: D is 1000 times larger (|D| in the hundreds), tanh saturates."""
    return DAM(model.xi.to(dtype), model.xc.to(dtype), model.n, model.T / 10)


def _double(model: DAM) -> DAM:
    return DAM(model.xi.double(), model.xc.double(), model.n, model.T)


# --- objectives -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 30])
def test_log_objective_matches_direct_formula(m: int) -> None:
    g = torch.Generator().manual_seed(0)
    D = torch.randn(50, 10, generator=g, dtype=torch.float64) * 1.5
    alpha = torch.randint(0, 10, (50,), generator=g)
    direct = torch.log(((torch.tanh(D) - obj.targets(alpha, D)) ** (2 * m)).sum(1))
    torch.testing.assert_close(obj.log_objective(D, alpha, m), direct, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(obj.naive_objective(D, alpha, m).log(), direct, rtol=1e-12, atol=1e-12)


def test_log_objective_is_finite_where_the_direct_formula_underflows() -> None:
    D = torch.full((2, 10), -800.0)
    D[:, 3] = 800.0
    naive = obj.naive_objective(D, 3, 30)
    assert (naive == 0).all()  # log C = -inf the direct way
    stable = obj.log_objective(D, 3, 30)
    # every |Y - t| = 2 / (1 + e^1600) ~ 2 e^-1600: log C = log 10 + 60 (log 2 - 1600)
    expected = math.log(10) + 60 * (math.log(2) - 1600)
    torch.testing.assert_close(stable, torch.full((2,), expected), rtol=1e-6, atol=0.0)


def test_objective_weights_match_autograd() -> None:
    g = torch.Generator().manual_seed(1)
    D = (torch.randn(20, 10, generator=g, dtype=torch.float64) * 1.2).requires_grad_(True)
    alpha = torch.arange(20) % 10
    (w_auto,) = torch.autograd.grad(obj.naive_objective(D, alpha, 3).sum(), D)
    logw, sign = obj.log_objective_weights(D.detach(), alpha, 3)
    torch.testing.assert_close(sign * logw.exp(), w_auto, rtol=1e-10, atol=1e-300)


# --- gradient direction -----------------------------------------------------------------------------------


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.mark.parametrize("m", [2, 3, 30])
def test_stable_direction_equals_naive_direction_float64(small_model: DAM, mnist, m: int) -> None:
    model = _double(small_model)
    v = mnist.x_test[:40].double()
    alpha = torch.arange(40) % 10
    naive = obj.naive_gradient(model, v, alpha, m)
    stable, _ = obj.objective_gradient(model, v, alpha, m)
    ok = (naive != 0).any(1)
    assert ok.sum() >= 30
    cos = _cosine(naive[ok], stable[ok])
    assert torch.all(cos > 1 - 1e-10), cos.min()


def test_stable_direction_survives_where_naive_gradient_underflows(small_model: DAM, mnist) -> None:
    model = _saturated(small_model)
    v = mnist.x_test[:30]
    alpha = model.predict(v)  # own class: every output saturated at its target
    D = model.energy_difference(v)
    assert D.abs().min() > 20
    vanished = obj.naive_gradient_vanishes(model, v, alpha, 3)
    assert vanished.all()
    assert torch.equal(obj.naive_weights_vanish(D, alpha, 3), vanished)
    g, _ = obj.objective_gradient(model, v, alpha, 3)
    assert torch.isfinite(g).all() and (g.abs().amax(1) > 0).all()
    # it is a descent direction: a small step along -u lowers log C for every image
    before = obj.log_objective(D, alpha, 3)
    after = obj.log_objective(model.energy_difference(v - 0.05 * obj.unit(g)), alpha, 3)
    assert torch.all(after < before)
    # and the same direction as the float64 stable gradient
    g64, _ = obj.objective_gradient(_double(model), v.double(), alpha, 3)
    assert torch.all(_cosine(g.double(), g64) > 1 - 1e-4)


def test_vanishing_detector_separates_saturated_from_healthy_images(small_model: DAM, mnist) -> None:
    v = mnist.x_test[:20]
    alpha = torch.arange(20) % 10
    healthy = obj.naive_gradient_vanishes(small_model, v, alpha, 3)
    assert not healthy.any()
    sat = _saturated(small_model)
    own = sat.predict(v)
    assert obj.naive_gradient_vanishes(sat, v, own, 3).all()
    assert obj.naive_weights_vanish(sat.energy_difference(v), own, 3).all()


def test_unit_vector_is_safe_for_tiny_and_zero_rows() -> None:
    g = torch.zeros(3, 784)
    g[0, :5] = 1e-44  # subnormal float32: the plain norm underflows to 0
    g[1] = 2.0
    u = obj.unit(g)
    torch.testing.assert_close(u[:2].norm(dim=1), torch.ones(2))
    assert (u[2] == 0).all()




def test_direction_flags_flat_images_where_no_memory_is_active() -> None:
    """``flat``: every D and the gradient exactly 0 (no memory active), in float64 too; the other flags
    follow: no direction at all."""
    xi = torch.ones(3, 784)
    xc = torch.tensor([[0.5, -0.5] * 5] * 3)
    model = DAM(xi, xc, 3, 100.0)
    v = torch.stack([torch.full((784,), -1.0), torch.full((784,), 0.5)])  # xi.v = -784 (dead), +392 (alive)
    alpha = torch.tensor([2, 2])
    d = S.direction(model, obj.float64_twin(model), v, alpha, 2, clip=True)
    assert d.flat.tolist() == [True, False]
    assert d.zero.tolist() == [True, False] and d.underflow[0]
    assert (d.D[0] == 0).all() and (d.D[1] != 0).any()
