"""The DAM_n classifier (eqs. 1-2): hand-derived gradients, numerics at large n, devices."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch._dynamo.exc import BackendCompilerFailed
from torch._inductor.exc import InvalidCxxCompiler

from dam_utils import model as M
from dam_utils.model import DAM, energy_difference, reference_energy_difference
from dam_utils.train import _targets, loss_fn


def _weights(K: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xi = torch.empty(K, 784, dtype=dtype).normal_(-0.1, 0.4, generator=g).clamp(-1, 1)
    xc = torch.empty(K, 10, dtype=dtype).normal_(0.0, 0.5, generator=g).clamp(-1, 1)
    # a few "prototype" memories aligned with the inputs, so that many arguments are positive
    return xi, xc


def _images(B: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 784, dtype=dtype, generator=g) * 2 - 1


@pytest.mark.parametrize("n,T", [(2, 60.0), (3, 300.0), (20, 540.0), (30, 650.0)])
def test_forward_equals_literal_eq1(n: int, T: float) -> None:
    xi, xc = _weights(40, torch.float64)
    v = _images(6, torch.float64)
    v[:3] = torch.sign(xi[:3]) * 0.9  # inputs resembling memories: large positive arguments
    ours = energy_difference(v, xi, xc, n, T)
    ref = reference_energy_difference(v, xi, xc, n, T)
    assert ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n,T", [(2, 60.0), (3, 300.0), (20, 540.0), (30, 650.0)])
def test_hand_gradients_equal_autograd(n: int, T: float) -> None:
    """The hand-derived backward of _EnergyDifference equals autograd through the literal eq. (1)."""
    xi, xc = _weights(40, torch.float64)
    v = _images(6, torch.float64)
    v[:3] = torch.sign(xi[:3]) * 0.9
    w = torch.randn(6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grads = []
    for fn in (energy_difference, reference_energy_difference):
        leaves = [t.clone().requires_grad_(True) for t in (v, xi, xc)]
        (fn(*leaves, n, T) * w).sum().backward()
        grads.append([t.grad for t in leaves])
    for ours, ref in zip(*grads, strict=True):
        assert ref.abs().max() > 0
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)


def test_training_loss_gradient_matches_autograd() -> None:
    """Gradient of eq. (3) w.r.t. the concatenated memories, as the trainer computes it."""

    xi, xc = _weights(30, torch.float64)
    v = _images(8, torch.float64)
    v[:4] = torch.sign(xi[:4]) * 0.8
    y = torch.arange(8) % 10
    n, T, m = 3, 250.0, 3
    w = torch.cat([xi, xc], 1)
    grads = []
    for fn in (energy_difference, reference_energy_difference):
        ww = w.clone().requires_grad_(True)
        loss = loss_fn(torch.tanh(fn(v, ww[:, :784], ww[:, 784:], n, T)), _targets(y).double(), m)
        (g,) = torch.autograd.grad(loss, ww)
        grads.append(g)
    assert grads[1].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("n", [30, 40])
def test_float32_finite_at_large_n_with_extreme_inputs(n: int) -> None:
    """Folding the temperature in keeps F_n finite in float32; unfolded it overflows."""
    g = torch.Generator().manual_seed(0)
    K = 64
    xi = torch.sign(torch.randn(K, 784, generator=g))  # weights at the clip boundary +-1
    xc = torch.sign(torch.randn(K, 10, generator=g))
    v = torch.cat([torch.sign(torch.randn(30, 784, generator=g)), xi[:10], -xi[:10]])  # extreme inputs
    T = 500.0
    leaves = [t.clone().requires_grad_(True) for t in (v, xi, xc)]
    d = energy_difference(*leaves, n, T)
    assert torch.isfinite(d).all()
    (torch.tanh(d) * torch.randn(d.shape, generator=g)).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)
    # the literal computation without the temperature folded in overflows float32
    x = (v @ xi.T).max()
    assert not torch.isfinite(x**n)
    # and our float32 result agrees with float64
    d64 = energy_difference(v.double(), xi.double(), xc.double(), n, T)
    torch.testing.assert_close(d.double(), d64, rtol=1e-4, atol=1e-3)


def test_compiled_kernels_match_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch.compile fast path computes the same numbers as the chunked eager path."""
    if not M.compile_enabled():
        pytest.skip("DAM_COMPILE=0")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 700, generator=g) * 0.6  # 300*700*10 elements: above the compile threshold
    c2 = torch.randn(700, 10, generator=g) * 0.01
    gg = torch.randn(300, 10, generator=g)
    assert M._big(a)
    fast_f, fast_b = M._fwd(a, c2, 20), M._bwd(a, c2, gg, 20)
    if M._NO_COMPILER:
        pytest.skip("no working compiler on this machine: eager fallback used")
    # float32 sums in another order: compare relative to the tensor's scale
    for x, y in zip((fast_f, *fast_b), (M._forward_eager(a, c2, 20), *M._backward_eager(a, c2, gg, 20)), strict=True):
        assert y.abs().max() > 0
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * y.abs().max().item())


def test_compiler_missing_falls_back_once_real_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the 'no C++ compiler' failure falls back to the eager kernels (with one warning);
    any other exception from the compiled path is a real error and reaches the caller."""

    monkeypatch.setenv("DAM_COMPILE", "1")
    monkeypatch.setattr(M, "_NO_COMPILER", [])
    a, c2 = torch.rand(300, 700) - 0.5, torch.rand(700, 10) * 0.01

    def bug(*args):
        raise RuntimeError("shape mismatch in kernel")

    monkeypatch.setattr(M, "_run_compiled", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        M._fwd(a, c2, 3)
    assert not M._NO_COMPILER

    def no_compiler(*args):
        raise BackendCompilerFailed(lambda *x: None, InvalidCxxCompiler(), None)

    monkeypatch.setattr(M, "_run_compiled", no_compiler)
    with pytest.warns(UserWarning, match="torch.compile unavailable"):
        out = M._fwd(a, c2, 3)
    torch.testing.assert_close(out, M._forward_eager(a, c2, 3))
    assert M._NO_COMPILER and os.environ["DAM_COMPILE"] == "1"  # the process-wide switch is untouched
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        M._fwd(a, c2, 3)


def test_predict_and_outputs_consistent() -> None:
    xi, xc = _weights(50, torch.float32)
    model = DAM(xi, xc, n=3, T=300.0)
    v = _images(2500, torch.float32)
    y = model.predict_outputs(v, batch_size=1000)
    assert y.shape == (2500, 10) and (y.abs() <= 1).all()
    d = model.predict_energy(v, batch_size=700)
    torch.testing.assert_close(torch.tanh(d), y)
    assert torch.equal(model.predict(v), d.argmax(1))
    assert model.beta == pytest.approx(300.0**-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_same_call_on_cuda() -> None:
    xi, xc = _weights(50, torch.float32)
    v = _images(20, torch.float32)
    cpu = DAM(xi, xc, 20, 540.0)
    torch.testing.assert_close(cpu.to("cuda")(v.cuda()).cpu(), cpu(v), rtol=1e-4, atol=1e-5)
