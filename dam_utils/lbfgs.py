"""Box-constrained L-BFGS adversarial images (Szegedy et al. 2013), as Hinthorn's report makes them (seed 003, §3,
§5.1; appendix B).

For an image ``x`` in [0, 1]^784 and a target label ``l``, minimise

    c * ||r||_2^2 + CE(f(x + r), l)    subject to   0 <= x + r <= 1

with scipy's L-BFGS-B, the Fortran code of Byrd, Lu, Nocedal and Zhu that the original used (memory 15, at most
150 iterations per solve, as in the report's code), the gradient from torch. The penalty ``c`` is searched as
Szegedy's "line-search": start at ``c_start`` and divide by 10 until the solve reaches the target, then bisect
between that ``c`` and the last failing one, keeping the LARGEST ``c`` that still reaches the target, i.e. the
smallest perturbation found. An image counts only if the model's label of ``x + r`` is the target.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import minimize
from torch import nn

from .params import Preset, float_field, int_field

__all__ = ["LBFGSConfig", "LBFGSResult", "lbfgs_adversarial", "objective"]


@dataclass(frozen=True)
class LBFGSConfig(Preset):
    """The solver and the search over ``c`` (module doc)."""

    memory: int = int_field(15, 1, 100)
    max_iter: int = int_field(150, 1, 10**5)
    c_start: float = float_field(10.0, 0.0, None, lo_inclusive=False)
    c_min: float = float_field(1e-7, 0.0, None, lo_inclusive=False)
    bisect_steps: int = int_field(8, 0, 100)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {}, "smoke": {"max_iter": 30,
                                                                                      "bisect_steps": 2}}


@dataclass
class LBFGSResult:
    """``x_adv`` (784,) in [0, 1]; ``success``: the model labels it ``target``; ``c`` the penalty kept; the norms
    of ``r = x_adv - x`` and the model's probability of the target; ``solves``: L-BFGS-B runs spent."""

    x_adv: np.ndarray
    target: int
    success: bool
    c: float
    l2: float
    linf: float
    p_target: float
    solves: int


def objective(model: nn.Module, x: np.ndarray, target: int, c: float
              ) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """``r -> (c ||r||^2 + CE(f(x + r), target), gradient)`` for scipy (``jac=True``), computed in float64 on a
    float64 copy of ``model`` (L-BFGS-B's line search and finite-difference checks need more than float32)."""
    m64 = copy.deepcopy(model).double().eval()
    x_t = torch.as_tensor(x, dtype=torch.float64)
    y = torch.tensor([target])

    def fun(r: np.ndarray) -> tuple[float, np.ndarray]:
        r_t = torch.as_tensor(r, dtype=torch.float64).requires_grad_(True)
        loss = c * (r_t**2).sum() + nn.functional.cross_entropy(m64((x_t + r_t).unsqueeze(0)), y)  # (1, 10) logits
        (grad,) = torch.autograd.grad(loss, r_t)
        return float(loss.detach()), grad.numpy()

    return fun


def _solve(model: nn.Module, x: np.ndarray, target: int, c: float, cfg: LBFGSConfig) -> tuple[np.ndarray, bool]:
    bounds = list(zip(-x, 1.0 - x, strict=True))  # 0 <= x + r <= 1
    res = minimize(objective(model, x, target, c), np.zeros_like(x), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxcor": cfg.memory, "maxiter": cfg.max_iter})
    x_adv = np.clip(x + res.x, 0.0, 1.0)  # L-BFGS-B keeps the bounds; the clip only removes rounding
    with torch.no_grad():
        hit = int(model(torch.as_tensor(x_adv, dtype=torch.float32).unsqueeze(0)).argmax(1)) == target
    return x_adv, hit


def lbfgs_adversarial(model: nn.Module, x: np.ndarray | torch.Tensor, target: int,
                      cfg: LBFGSConfig | None = None) -> LBFGSResult:
    """The adversarial image of ``x`` (784,) in [0, 1] for label ``target`` (module doc). ``model`` maps (B, 784)
    images in [0, 1] to logits and is used in eval mode."""
    cfg = cfg or LBFGSConfig()
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape != (784,) or x.min() < 0 or x.max() > 1:
        raise ValueError("x must be one image of 784 pixels in [0, 1]")
    if not 0 <= int(target) < 10:
        raise ValueError(f"target must be a label 0..9, got {target}")
    model.eval()
    c, solves, fail_c = cfg.c_start, 0, None
    best: tuple[np.ndarray, float] | None = None
    while c >= cfg.c_min:  # down by 10 until the target is reached
        x_adv, hit = _solve(model, x, target, c, cfg)
        solves += 1
        if hit:
            best = (x_adv, c)
            break
        fail_c, c = c, c / 10
    if best is not None and fail_c is not None:  # bisect between the success and the last failure
        lo, hi = best[1], fail_c
        for _ in range(cfg.bisect_steps):
            mid = (lo + hi) / 2
            x_adv, hit = _solve(model, x, target, mid, cfg)
            solves += 1
            if hit:
                lo, best = mid, (x_adv, mid)
            else:
                hi = mid
    x_adv, c = best if best is not None else (x_adv, c * 10)
    with torch.no_grad():
        p = torch.softmax(model(torch.as_tensor(x_adv, dtype=torch.float32).unsqueeze(0)), 1)[0]
    r = x_adv - x
    return LBFGSResult(x_adv=x_adv.astype(np.float32), target=int(target), success=best is not None, c=float(c),
                       l2=float(np.linalg.norm(r)), linf=float(np.abs(r).max()), p_target=float(p[target]),
                       solves=solves)
