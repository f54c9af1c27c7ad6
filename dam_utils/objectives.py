"""The objectives of Krotov & Hopfield (2018), eq. (4), and the direction of their gradient, eq. (5),
computed so that they never underflow; shared by the rubbish images (:mod:`dam_utils.rubbish`) and the
decision-boundary deformations (:mod:`dam_utils.deform`).

A *classifier* here is anything with ``energy_difference(v) -> D`` of shape (B, 10) whose outputs are
``Y = tanh(D)`` (eq. (1) for DAM_n; see :class:`Classifier`). Everything is computed from ``D``, never
from ``Y``, because ``tanh`` saturates: in float32 ``tanh(D) == +-1`` exactly once ``|D| > ~9``, and
large-n models reach ``|D|`` in the thousands.

Objective, eq. (4)::

    C^alpha(v) = sum_gamma (Y_gamma - t^(alpha)_gamma)^(2m),   t^(alpha)_gamma = +1 if gamma == alpha else -1.

Update rule, eq. (5)::

    v <- v - eps * u(dC^alpha / dv),   u(g) = g / ||g||_2   (per image, over the 784 pixels).

Numerics (why there is a "stable" and a "naive" path):

* ``log|Y - t| = log 2 - softplus(2 t D)`` for ``t = +-1`` (exactly: ``1 - tanh D = 2 / (1 + e^{2D})``),
  so :func:`log_objective` is ``logsumexp_gamma 2m log|Y_gamma - t_gamma|``: finite for every finite D.
* ``dC/dv = sum_gamma w_gamma dD_gamma/dv`` with ``w_gamma = 2m (Y - t)^(2m-1) sech^2(D_gamma)``. Eq. (5)
  needs only the *direction*, so we compute ``log|w_gamma|`` in log space
  (``log sech^2 D = 2 log 2 - 2|D| - 2 log(1 + e^{-2|D|})``), subtract the per-image maximum and
  back-propagate ``D`` with those rescaled weights (:func:`objective_gradient`). Same direction, no underflow.
* The naive path (autograd through ``tanh`` and the power, :func:`naive_gradient`) gives an exactly zero
  gradient once ``Y`` saturates. :func:`naive_gradient_vanishes` measures that per image; the attacks count,
  at every step, the images whose naive ``dC/dD`` is exactly zero (:func:`naive_weights_vanish`).
* Where even ``dD/dv`` underflows inside a float32 model, :func:`float64_twin` gives a float64 copy.

Assumption: the classifier treats images independently (no batch statistics), so that per-image rescaling
of the backward weights does not mix images. Pure functions, no loops over steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

__all__ = [
    "Classifier",
    "FunctionClassifier",
    "as_classifier",
    "float64_twin",
    "log_abs_residual",
    "log_objective",
    "log_objective_of",
    "log_objective_weights",
    "log_sech2",
    "model_loss",
    "naive_gradient",
    "naive_gradient_vanishes",
    "naive_objective",
    "naive_weights_vanish",
    "objective_gradient",
    "project",
    "targets",
    "unit",
]

LOG2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------------------
# Classifiers
# ---------------------------------------------------------------------------------------------------------


@runtime_checkable
class Classifier(Protocol):
    """Anything with ``energy_difference(v) -> D`` (B, 10), differentiable w.r.t. ``v`` (B, 784); outputs
    are ``Y = tanh(D)``. :class:`dam_utils.model.DAM` is one; an MLP or CNN with a tanh output layer
    returning its pre-tanh logits is another (wrap a plain function with :class:`FunctionClassifier`)."""

    def energy_difference(self, v: torch.Tensor) -> torch.Tensor: ...


class FunctionClassifier:
    """Wrap a callable ``fn(v) -> D`` (B, 10) (e.g. a ``torch.nn.Module`` returning pre-tanh logits)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def energy_difference(self, v: torch.Tensor) -> torch.Tensor:
        return self.fn(v)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Outputs ``Y = tanh(D)``."""
        return torch.tanh(self.fn(v))


def as_classifier(model: Classifier | Callable[[torch.Tensor], torch.Tensor]) -> Classifier:
    """``model`` itself if it has ``energy_difference``, else a :class:`FunctionClassifier` around it."""
    if hasattr(model, "energy_difference"):
        return model  # type: ignore[return-value]
    if callable(model):
        return FunctionClassifier(model)
    raise TypeError(f"expected a Classifier (energy_difference) or a callable, got {type(model).__name__}")



# ---------------------------------------------------------------------------------------------------------
# Objectives, eq. (4), and the direction of their gradient, eq. (5)
# ---------------------------------------------------------------------------------------------------------


def _alpha_tensor(alpha: int | torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    if isinstance(alpha, int):
        return torch.full((D.shape[0],), alpha, dtype=torch.long, device=D.device)
    return alpha.to(D.device, torch.long)


def targets(alpha: int | torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Target outputs ``t^(alpha)`` of eq. (4): +1 for class alpha, -1 elsewhere; (B, 10), D's dtype."""
    a = _alpha_tensor(alpha, D)  # (B,)
    t = torch.full_like(D, -1.0)
    t[torch.arange(D.shape[0], device=D.device), a] = 1.0
    return t


def log_abs_residual(D: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``log|tanh(D) - t|`` for ``t = +-1``, exactly and stably: ``log 2 - softplus(2 t D)``; (B, 10)."""
    return LOG2 - F.softplus(2.0 * t * D)


def log_sech2(D: torch.Tensor) -> torch.Tensor:
    """``log sech^2(D) = log(1 - tanh^2 D) = 2 log 2 - 2|D| - 2 log(1 + e^{-2|D|})``; never -inf."""
    a = D.abs()
    return 2.0 * LOG2 - 2.0 * a - 2.0 * torch.log1p(torch.exp(-2.0 * a))


def model_loss(model: Classifier) -> str:
    """The objective the attacks descend for ``model``: ``"ce"`` (cross-entropy of ``D``) for a classifier
    trained with it (attribute ``loss == "ce"``, e.g. :class:`dam_utils.polynet.PolyNet`), else ``"dam"``,
    eq. (4). An attack follows the model's own training objective, as the paper's attacks do for the DAM."""
    return "ce" if getattr(model, "loss", "dam") == "ce" else "dam"


def log_objective_of(model: Classifier, D: torch.Tensor, alpha: int | torch.Tensor, m: int) -> torch.Tensor:
    """``log`` of the model's own objective for class ``alpha`` (:func:`model_loss`): :func:`log_objective`,
    or ``log CE^alpha = log(-log softmax(D)_alpha)`` (floored at the smallest normal number); (B,)."""
    if model_loss(model) == "ce":
        ce = F.cross_entropy(D, _alpha_tensor(alpha, D), reduction="none")
        return torch.log(ce.clamp_min(torch.finfo(D.dtype).tiny))
    return log_objective(D, alpha, m)


def log_objective(D: torch.Tensor, alpha: int | torch.Tensor, m: int) -> torch.Tensor:
    """``log C^alpha`` of eq. (4) from the pre-tanh outputs D (B, 10); (B,). Finite for finite D."""
    return torch.logsumexp(2 * m * log_abs_residual(D, targets(alpha, D)), dim=1)


def naive_objective(D: torch.Tensor, alpha: int | torch.Tensor, m: int) -> torch.Tensor:
    """``C^alpha`` of eq. (4) written literally from ``Y = tanh(D)``; (B,). Underflows for saturated Y."""
    return ((torch.tanh(D) - targets(alpha, D)) ** (2 * m)).sum(1)


def log_objective_weights(
    D: torch.Tensor, alpha: int | torch.Tensor, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log|w|, sign w)`` of ``w_gamma = dC^alpha/dD_gamma = 2m (Y - t)^(2m-1) sech^2(D_gamma)``; (B, 10).

    ``sign(Y - t) = -t`` (``Y`` lies in [-1, 1]) and ``2m - 1`` is odd, so ``sign w = -t``.
    """
    t = targets(alpha, D)
    logw = math.log(2 * m) + (2 * m - 1) * log_abs_residual(D, t) + log_sech2(D)
    return logw, -t


def objective_gradient(
    model: Classifier, v: torch.Tensor, alpha: int | torch.Tensor, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A positive per-image multiple of ``dC^alpha/dv`` (eq. (5) needs only its direction), and D. For a
    classifier trained with cross-entropy (:func:`model_loss`) ``C^alpha`` is its cross-entropy for class
    ``alpha``, differentiated by autograd.

    Backpropagates D with the weights ``w_gamma / max_gamma |w_gamma|`` (computed in log space), i.e. the
    exact direction of the gradient with the largest weight of every image equal to 1. Returns
    ``(g, D)``: ``g`` (B, 784), ``D`` (B, 10) at ``v`` (both detached).
    """
    v = v.detach().requires_grad_(True)
    with torch.enable_grad():
        D = model.energy_difference(v)  # (B, 10)
        if model_loss(model) == "ce":  # cross-entropy: dCE/dD = softmax - onehot, never all zero (alpha's is p - 1)
            loss = F.cross_entropy(D, _alpha_tensor(alpha, D), reduction="sum")
            (g,) = torch.autograd.grad(loss, v)
            return g.detach(), D.detach()
        logw, sign = log_objective_weights(D.detach(), alpha, m)
        w = sign * torch.exp(logw - logw.amax(1, keepdim=True))  # (B, 10), max |w| = 1 per image
        (g,) = torch.autograd.grad(D, v, grad_outputs=w)
    return g.detach(), D.detach()


def naive_gradient(model: Classifier, v: torch.Tensor, alpha: int | torch.Tensor, m: int) -> torch.Tensor:
    """``dC^alpha/dv`` by plain autograd through ``tanh`` and the power (the textbook path); (B, 784)."""
    v = v.detach().requires_grad_(True)
    with torch.enable_grad():
        C = naive_objective(model.energy_difference(v), alpha, m)  # (B,)
        (g,) = torch.autograd.grad(C.sum(), v)
    return g.detach()


def naive_gradient_vanishes(
    model: Classifier, v: torch.Tensor, alpha: int | torch.Tensor, m: int
) -> torch.Tensor:
    """Per image, True where the naive autograd gradient of C^alpha is exactly zero (all 784 pixels); (B,)."""
    return (naive_gradient(model, v, alpha, m) == 0).all(1)


def naive_weights_vanish(D: torch.Tensor, alpha: int | torch.Tensor, m: int) -> torch.Tensor:
    """Cheap detector used inside the attacks: True where the naive ``dC/dD`` is exactly zero for every
    output, computed as autograd does (``2m (Y - t)^(2m-1)`` times ``1 - Y^2``, D's dtype); (B,).

    A zero ``dC/dD`` forces a zero naive ``dC/dv``, so this counts a subset of the images that
    :func:`naive_gradient_vanishes` reports (in practice the same set: the test suite checks it).
    """
    y = torch.tanh(D)
    w = (2 * m) * (y - targets(alpha, D)) ** (2 * m - 1) * (1 - y * y)
    return (w == 0).all(1)


def unit(g: torch.Tensor) -> torch.Tensor:
    """``u(g) = g / ||g||_2`` per image (rows); rows with ``g == 0`` stay zero; (B, 784).

    Rows are first divided by their largest ``|g_i|`` so that the norm cannot underflow or overflow.
    """
    scale = g.abs().amax(1, keepdim=True)  # (B, 1)
    h = torch.where(scale > 0, g / torch.where(scale > 0, scale, torch.ones_like(scale)), torch.zeros_like(g))
    norm = h.norm(dim=1, keepdim=True)  # (B, 1), in [1, 28] where nonzero
    return torch.where(norm > 0, h / torch.where(norm > 0, norm, torch.ones_like(norm)), h)


def project(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Zero the components of a descent gradient that would push a pixel already at -1 or +1 out of the
    box (``v - eps g`` with ``v = -1, g > 0`` or ``v = +1, g < 0``): the projected gradient, so that each
    clipped step of eq. (5) moves the image by ``eps`` along the feasible directions; (B, 784)."""
    out = ((v <= -1.0) & (g > 0)) | ((v >= 1.0) & (g < 0))
    return g.masked_fill(out, 0.0)


def float64_twin(model: Classifier) -> Classifier | None:
    """A float64 copy of ``model`` for the underflow fallback, or None if there is none to make.

    A classifier may provide ``as_float64()``; DAM-like models (tensors ``xi``, ``xc``; ``n``, ``T``) get
    ``type(model)(xi.double(), xc.double(), n, T)``. Models already in float64 return None.
    """
    make = getattr(model, "as_float64", None)
    if callable(make):
        return make()
    xi = getattr(model, "xi", None)
    if isinstance(xi, torch.Tensor) and all(hasattr(model, a) for a in ("xc", "n", "T")):
        if xi.dtype == torch.float64:
            return None
        return type(model)(xi.double(), model.xc.double(), model.n, model.T)  # type: ignore[call-arg]
    return None

