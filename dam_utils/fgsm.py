"""The fast gradient sign method (Goodfellow, Shlens & Szegedy 2014), the attack most readers know (chapter 5).

``x_adv = clip(x + eps' sign(grad_x J(x, y)))``: one step of size ``eps`` in every pixel, up the gradient of
the model's **own training loss** ``J`` at the true label ``y``
(:func:`dam_utils.objectives.model_loss`): cross-entropy for a network trained with it, the objective of
eq. (4), ``C^y = sum_gamma (Y_gamma - t^(y)_gamma)^(2m)``, for a DAM (and a network trained with the DAM's
objective). ``eps`` is given on the usual [0, 1] pixel scale; the book's pixels live in [-1, 1], so the step
there is ``eps' = 2 eps``.

Why not foolbox's ``FGSM``: it differentiates cross-entropy of the outputs by plain autograd. For a DAM with
large n the outputs saturate, and a gradient taken through them is exactly zero in float32 for most test
digits: the attack would "fail" by gradient masking, not because the model is robust. The sign of a vector is
unchanged by a positive factor, so the gradient comes from :func:`dam_utils.objectives.objective_gradient`
(eq. (4) in its stable form, with the float64 twin where float32 underflows), which has exactly the sign of the
true gradient. Images whose gradient is still exactly zero (a confident cross-entropy network can underflow
``softmax - onehot`` at the true class) cannot move; they are counted (``zero_gradient``), never hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .objectives import Classifier, float64_twin, objective_gradient
from .params import ParameterError, check_float, check_int

__all__ = ["FGSMDirection", "check_epsilons", "fgsm_direction", "fgsm_images"]



@dataclass
class FGSMDirection:
    """``sign`` (N, 784) of the loss gradient at the clean images (0 where a pixel's gradient is 0), and
    ``zero_gradient`` (N,) bool: images whose whole gradient is exactly zero (they do not move)."""

    sign: torch.Tensor
    zero_gradient: torch.Tensor


def fgsm_direction(model: Classifier, x: torch.Tensor, y: torch.Tensor, m: int = 1,
                   batch_size: int = 1000) -> FGSMDirection:
    """The FGSM direction of ``model`` at clean images ``x`` (N, 784) with true labels ``y`` (N,), ascending
    the model's own loss (eq. (4) with loss power ``m``, or cross-entropy). Runs on the device of ``x``; the
    result is on the CPU."""
    m = check_int("m", m, 1, 1000)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (N, 784) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    twin = float64_twin(model)
    signs, zeros = [], []
    for lo in range(0, len(x), batch_size):
        v, t = x[lo : lo + batch_size], y[lo : lo + batch_size].to(x.device)
        g, _ = objective_gradient(model, v, t, m)
        flat = (g == 0).all(1)
        if twin is not None and bool(flat.any()):  # float32 underflow: the float64 copy has the same sign
            g64, _ = objective_gradient(twin, v[flat].double(), t[flat], m)
            g[flat] = torch.sign(g64).to(g.dtype)
        signs.append(torch.sign(g).cpu())
        zeros.append((g == 0).all(1).cpu())
    return FGSMDirection(torch.cat(signs), torch.cat(zeros))


def fgsm_images(x: torch.Tensor, direction: FGSMDirection, eps: float) -> torch.Tensor:
    """``clip(x + 2 eps sign, -1, 1)``: the adversarial images at ``eps`` on the [0, 1] pixel scale; (N, 784)."""
    eps = check_float("eps", eps, 0.0, 1.0)
    return (x.cpu() + 2.0 * eps * direction.sign.to(x.dtype)).clamp(-1.0, 1.0)


def check_epsilons(eps: Sequence[float]) -> list[float]:
    """The FGSM step sizes (at least one), each in (0, 1]; :class:`~dam_utils.params.ParameterError` otherwise."""
    if len(eps) == 0:
        raise ParameterError("Parameter 'fgsm_eps' is empty: give at least one step size in (0, 1].")
    return [check_float("fgsm_eps", e, 0.0, 1.0, lo_inclusive=False) for e in eps]
