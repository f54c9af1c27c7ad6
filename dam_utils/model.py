"""The DAM_n classifier of Krotov & Hopfield (2018), eqs. (1)-(2).

Notation (paper, Fig. 1): ``N = 784`` visible neurons ``v_i`` in [-1, 1], ``N_c = 10``
classification neurons, ``K`` memories with visible parts ``xi[mu, i]`` (K x N) and
class parts ``xc[mu, alpha]`` (K x N_c). The classification neurons start "off"
(``x_gamma = -1``) and are updated once, eq. (1)::

    Y_alpha = tanh( beta * sum_mu [ F_n(xi^mu.v + xc^mu_alpha - sum_{gamma != alpha} xc^mu_gamma)
                                  - F_n(xi^mu.v - xc^mu_alpha - sum_{gamma != alpha} xc^mu_gamma) ] )

With ``a_mu = xi^mu.v - sum_gamma xc^mu_gamma`` the two arguments are ``a_mu + 2 xc^mu_alpha``
and ``a_mu``, so the second term does not depend on alpha. ``F_n(x) = max(x, 0)^n`` is the
rectified polynomial of eq. (2) and ``beta = 1 / T^n`` (Krotov & Hopfield 2016, App. A).

Numerics: ``F_n`` overflows float32 for large n (``800^30 = 1e87``). We fold the
temperature into the argument, ``beta F_n(x) = F_n(x / T)``, so with |v|, |xi| <= 1 and
the paper's ``T >= 250`` every power stays below ``3.2^40 ~ 1e20``.

The pre-tanh quantity ``D_alpha = beta * sum_mu [...]`` (the energy difference) is exposed
by :meth:`DAM.energy_difference`; attacks need it because ``tanh`` saturates.
Gradients are hand-derived in :class:`_EnergyDifference` (tests compare them with
autograd on :func:`reference_energy_difference`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .data_sources import N_CLASSES, N_PIXELS  # noqa: F401  (re-exported: the model's sizes)

# ---------------------------------------------------------------------------------------
# The fused B x K x C part: everything that touches every (example, memory, class) triple.
# These are written so torch.compile fuses each into one loop nest (no B x K x C tensor
# is materialised); the eager fallback chunks over memories to stay inside the cache.
# ---------------------------------------------------------------------------------------


def _forward_core(a: torch.Tensor, c2: torch.Tensor, n: int) -> torch.Tensor:
    """D = sum_mu [relu(a + c2_alpha)^n - relu(a)^n], shape (B, C). ``a``: (B, K), ``c2``: (K, C).
    A leading stack dimension S (several models at once, :mod:`dam_utils.train_stack`) is carried through:
    (S, B, K) and (S, K, C) give (S, B, C)."""
    r = (a.unsqueeze(-1) + c2.unsqueeze(-3)).clamp(min=0)  # (B, K, C)
    return (r**n).sum(-2) - (a.clamp(min=0) ** n).sum(-1, keepdim=True)


def _backward_core(
    a: torch.Tensor, c2: torch.Tensor, g: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """With P[b, mu, alpha] = g[b, alpha] relu(a + c2)^(n-1), returns (Q T / n, sum_b P) where
    Q T / n = sum_alpha P - (sum_alpha g) relu(a)^(n-1) is the derivative w.r.t. a (up to n / T)."""
    r = (a.unsqueeze(-1) + c2.unsqueeze(-3)).clamp(min=0)  # (B, K, C)
    p = g.unsqueeze(-2) * r ** (n - 1)  # (B, K, C)
    return p.sum(-1) - g.sum(-1, keepdim=True) * a.clamp(min=0) ** (n - 1), p.sum(-3)


_CHUNK = 256  # memories per eager chunk: B x 256 x 10 floats stay near the L2 cache


def _forward_eager(a: torch.Tensor, c2: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(*a.shape[:-1], c2.shape[-1], dtype=a.dtype, device=a.device)  # (..., B, C)
    for k in range(0, a.shape[-1], _CHUNK):
        out += _forward_core(a[..., k : k + _CHUNK], c2[..., k : k + _CHUNK, :], n)
    return out


def _backward_eager(
    a: torch.Tensor, c2: torch.Tensor, g: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_backward_core(a[..., k : k + _CHUNK], c2[..., k : k + _CHUNK, :], g, n)
             for k in range(0, a.shape[-1], _CHUNK)]
    return torch.cat([p[0] for p in parts], -1), torch.cat([p[1] for p in parts], -2)


_compiled: dict[tuple[str, int], object] = {}


def compile_enabled() -> bool:
    """torch.compile is used unless ``DAM_COMPILE=0`` (it needs a C++ compiler on CPU)."""
    return os.environ.get("DAM_COMPILE", "1") != "0"


def _big(a: torch.Tensor) -> bool:
    # Compiling costs seconds once per process and n; it pays off only on large problems.
    return a.numel() * 10 >= 2_000_000


def _core(name: str, n: int):
    """One compiled kernel per (direction, n): n is baked in as a constant so that
    ``r**n`` unrolls into multiplications; only the batch dimension is dynamic."""
    if (name, n) not in _compiled:
        if name == "fwd":
            fn = lambda a, c2: _forward_core(a, c2, n)  # noqa: E731
        else:
            fn = lambda a, c2, g: _backward_core(a, c2, g, n)  # noqa: E731
        _compiled[(name, n)] = torch.compile(fn, dynamic=None)
    return _compiled[(name, n)]


def _run_compiled(name: str, n: int, *args: torch.Tensor):
    # args: a (B, K), c2 (K, C) [, g (B, C)], each with an optional leading stack dimension S; only the
    # batch dimension B of a and g varies
    for t in (args[0], *args[2:]):
        if t.shape[-2] > 1:
            torch._dynamo.mark_dynamic(t, t.dim() - 2)
    return _core(name, n)(*args)


_NO_COMPILER: list[str] = []  # the reason, once torch.compile found no working compiler


def _compiler_missing(err: BaseException) -> bool:
    """True for the one failure we fall back on: no C++ compiler / unsupported backend for inductor.
    Every other exception (a shape bug, out of memory) is a real error and propagates."""
    text = f"{type(err).__name__}: {err}"
    return isinstance(err, torch._dynamo.exc.BackendCompilerFailed) and any(
        s in text for s in ("CppCompileError", "InvalidCxxCompiler", "compiler", "not supported")
    )


def run_fast(compiled: Callable[[], Any], eager: Callable[[], Any]) -> Any:
    """``compiled()`` (a torch.compile path) unless ``DAM_COMPILE=0`` or no compiler was found, else
    ``eager()`` (the same maths). Only a missing compiler falls back, with one warning per process."""
    if compile_enabled() and not _NO_COMPILER:
        try:
            return compiled()
        except Exception as err:
            if not _compiler_missing(err):
                raise
            _NO_COMPILER.append(str(err).splitlines()[0])
            warnings.warn(f"torch.compile unavailable ({_NO_COMPILER[0]}); using the eager DAM kernels "
                          "(same maths, slower). Set DAM_COMPILE=0 to silence this.", stacklevel=3)
    return eager()


def _dispatch(name: str, n: int, eager, *args: torch.Tensor):
    if not _big(args[0]):
        return eager(*args, n)
    return run_fast(lambda: _run_compiled(name, n, *args), lambda: eager(*args, n))


def _fwd(a: torch.Tensor, c2: torch.Tensor, n: int) -> torch.Tensor:
    return _dispatch("fwd", n, _forward_eager, a, c2)


def _bwd(a: torch.Tensor, c2: torch.Tensor, g: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _dispatch("bwd", n, _backward_eager, a, c2, g)


class _EnergyDifference(torch.autograd.Function):
    """D = beta * sum_mu [F_n(a + 2 xc_alpha) - F_n(a)], with hand-derived gradients.

    Shapes: v (B, N), xi (K, N), xc (K, C) -> D (B, C), or with a leading stack dimension S on all four
    (several models, each with its own images; :mod:`dam_utils.train_stack`). With ``f(x) = relu(x / T)^n``,
    ``f'(x) = (n / T) relu(x / T)^(n-1)``, ``P = g_alpha f'(a + 2 xc_alpha)`` and
    ``Q = sum_alpha P - (sum_alpha g_alpha) f'(a)`` (the total derivative w.r.t. a):

        dL/dv  = Q xi,   dL/dxi = Q^T v,   dL/dxc_alpha = 2 sum_b P_alpha - sum_b Q.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, xi: torch.Tensor, xc: torch.Tensor, n: int, T: float) -> torch.Tensor:
        a = (v @ xi.mT - xc.sum(-1).unsqueeze(-2)) / T  # (B, K), temperature folded in
        c2 = 2.0 * xc / T  # (K, C)
        d = _fwd(a, c2, n)  # (B, C)
        ctx.save_for_backward(v, xi, a, c2)
        ctx.n, ctx.T = n, T
        return d

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        v, xi, a, c2 = ctx.saved_tensors
        n, T = ctx.n, ctx.T
        g = g.contiguous()
        q_scaled, p_sum_b = _bwd(a, c2, g, n)  # (B, K), (K, C)
        q = (n / T) * q_scaled  # (B, K): total derivative w.r.t. the unscaled argument a
        gv = q @ xi if ctx.needs_input_grad[0] else None
        gxi = q.mT @ v if ctx.needs_input_grad[1] else None
        gxc = (2.0 * n / T) * p_sum_b - q.sum(-2).unsqueeze(-1) if ctx.needs_input_grad[2] else None
        return gv, gxi, gxc, None, None


def energy_difference(v: torch.Tensor, xi: torch.Tensor, xc: torch.Tensor, n: int, T: float) -> torch.Tensor:
    """Pre-tanh argument of eq. (1), ``beta * sum_mu [F_n(.) - F_n(.)]`` with beta = 1/T^n; (B, C)."""
    return _EnergyDifference.apply(v, xi, xc, n, T)


def reference_energy_difference(
    v: torch.Tensor, xi: torch.Tensor, xc: torch.Tensor, n: int, T: float
) -> torch.Tensor:
    """Eq. (1) written out literally (plain autograd, no folding tricks beyond x/T); for tests.

    Builds both arguments of eq. (1) for every class explicitly, with the sum over
    gamma != alpha, exactly as printed in the paper.
    """
    h = v @ xi.T  # (B, K)
    others = xc.sum(1, keepdim=True) - xc  # (K, C): sum_{gamma != alpha} xc_gamma
    plus = h.unsqueeze(2) + (xc - others).unsqueeze(0)  # (B, K, C)
    minus = h.unsqueeze(2) + (-xc - others).unsqueeze(0)  # (B, K, C)

    def rect_poly(x: torch.Tensor) -> torch.Tensor:  # F_n(x) / T^n, eq. (2)
        return torch.where(x >= 0, (x / T) ** n, torch.zeros_like(x))

    return (rect_poly(plus) - rect_poly(minus)).sum(1)


@dataclass
class DAM:
    """A trained (or initialised) DAM_n classifier; eq. (1).

    ``xi``: (K, 784) visible weights, ``xc``: (K, 10) class weights, both in [-1, 1].
    ``T``: temperature, ``beta = 1 / T^n``. Works on any device the tensors live on.
    """

    xi: torch.Tensor
    xc: torch.Tensor
    n: int
    T: float

    @property
    def K(self) -> int:
        return self.xi.shape[0]

    @property
    def beta(self) -> float:
        """beta = 1 / T^n (may underflow to 0.0 as a Python float for large n; never used in maths)."""
        return float(self.T) ** (-self.n)

    @property
    def device(self) -> torch.device:
        return self.xi.device

    def to(self, device: str | torch.device) -> DAM:
        return DAM(self.xi.to(device), self.xc.to(device), self.n, self.T)

    def energy_difference(self, v: torch.Tensor) -> torch.Tensor:
        """Pre-tanh output D (B, 10); differentiable w.r.t. v and the weights."""
        return energy_difference(v, self.xi, self.xc, self.n, self.T)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Outputs Y = tanh(D) of eq. (1), in [-1, 1]; (B, 10)."""
        return torch.tanh(self.energy_difference(v))

    @torch.no_grad()
    def predict_outputs(self, v: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Y for many images, in batches (no autograd); (B, 10)."""
        dev = self.device
        return torch.cat([self(v[i : i + batch_size].to(dev)) for i in range(0, len(v), batch_size)])

    @torch.no_grad()
    def predict_energy(self, v: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """D for many images, in batches (no autograd); (B, 10)."""
        dev = self.device
        return torch.cat([self.energy_difference(v[i : i + batch_size].to(dev)) for i in range(0, len(v), batch_size)])

    @torch.no_grad()
    def predict(self, v: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Predicted labels (argmax of D, which orders classes like Y but never ties by saturation)."""
        return self.predict_energy(v, batch_size).argmax(1)

    @torch.no_grad()
    def error_rate(self, v: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
        """Classification error in percent."""
        pred = self.predict(v, batch_size).cpu()
        return 100.0 * (pred != labels.cpu()).float().mean().item()
