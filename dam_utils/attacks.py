"""Gradient attacks of Krotov & Hopfield (2018): rubbish images (section 3) and decision-boundary
deformations (section 4), for DAM_n models and any other classifier with the same output layer.

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
  at every step, the images whose naive ``dC/dD`` is exactly zero (``vanishing`` in the results).

Assumption: the classifier treats images independently (no batch statistics), so that per-image rescaling
of the backward weights does not mix images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .params import ParameterError, check_bool, check_choice, check_float, check_int

__all__ = [
    "AT_CROSSING",
    "CONVERGED",
    "MAX_STEPS",
    "PLATEAU",
    "STATUS_NAMES",
    "Classifier",
    "DeformConfig",
    "DeformResult",
    "DeformTrace",
    "FunctionClassifier",
    "ParameterError",
    "RubbishConfig",
    "RubbishResult",
    "as_classifier",
    "deform",
    "float64_twin",
    "generate_rubbish",
    "log_abs_residual",
    "log_objective",
    "log_objective_weights",
    "naive_gradient",
    "naive_gradient_vanishes",
    "naive_objective",
    "naive_weights_vanish",
    "noise_images",
    "objective_gradient",
    "project",
    "refine_boundary",
    "step_size_sensitivity",
    "targets",
    "unit",
]

LOG2 = math.log(2.0)
N_CLASSES = 10

# Status codes of an image's run (RubbishResult.status, DeformResult.status).
RUNNING, CONVERGED, PLATEAU, MAX_STEPS, AT_CROSSING = 0, 1, 2, 3, 4
STATUS_NAMES = {RUNNING: "running", CONVERGED: "converged", PLATEAU: "plateau", MAX_STEPS: "max_steps",
                AT_CROSSING: "stopped at the crossing"}


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


def _model_device(model: Classifier, fallback: torch.device | str = "cpu") -> torch.device:
    dev = getattr(model, "device", None)
    return torch.device(dev) if dev is not None else torch.device(fallback)


def _model_dtype(model: Classifier) -> torch.dtype:
    xi = getattr(model, "xi", None)
    return xi.dtype if isinstance(xi, torch.Tensor) else torch.get_default_dtype()


@torch.no_grad()
def _energy(model: Classifier, v: torch.Tensor) -> torch.Tensor:
    return model.energy_difference(v)


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
    """A positive per-image multiple of ``dC^alpha/dv`` (eq. (5) needs only its direction), and D.

    Backpropagates D with the weights ``w_gamma / max_gamma |w_gamma|`` (computed in log space), i.e. the
    exact direction of the gradient with the largest weight of every image equal to 1. Returns
    ``(g, D)``: ``g`` (B, 784), ``D`` (B, 10) at ``v`` (both detached).
    """
    v = v.detach().requires_grad_(True)
    with torch.enable_grad():
        D = model.energy_difference(v)  # (B, 10)
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


@dataclass
class _Direction:
    """Per-step unit direction of eq. (5) for a batch, with the numerical diagnostics of that step."""

    u: torch.Tensor  # (A, 784) unit (projected) descent direction, zero rows where none
    D: torch.Tensor  # (A, 10) outputs at v, model dtype
    vanishing: torch.Tensor  # (A,) naive dC/dD exactly zero (tanh saturation)
    underflow: torch.Tensor  # (A,) float32 gradient zero or subnormal (< finfo.tiny); float64 twin used
    zero: torch.Tensor  # (A,) no usable direction at all (after the fallback and the projection)


def _direction(
    model: Classifier, twin: Classifier | None, v: torch.Tensor, alpha: torch.Tensor, m: int, clip: bool
) -> _Direction:
    """Stable gradient of C^alpha (:func:`objective_gradient`); where it is zero or subnormal because
    ``dD/dv`` underflows inside the model (e.g. ``relu(x/T)^29`` of a noise image at n = 30 is below the
    float32 range), the direction is recomputed with the float64 ``twin``; then projected onto the box."""
    g, D = objective_gradient(model, v, alpha, m)  # (A, 784), (A, 10)
    vanishing = naive_weights_vanish(D, alpha, m)
    underflow = g.abs().amax(1) < torch.finfo(g.dtype).tiny  # zero or subnormal: no reliable direction
    u = unit(g)
    if twin is not None and underflow.any():
        g64, _ = objective_gradient(twin, v[underflow].double(), alpha[underflow], m)
        u[underflow] = unit(g64).to(u.dtype)  # normalise in float64 first: |g64| may be ~1e-60
    if clip:
        u = unit(project(u, v))
    zero = (u == 0).all(1)
    return _Direction(u, D, vanishing, underflow, zero)


def _step(v: torch.Tensor, u: torch.Tensor, eps: float, clip: bool) -> torch.Tensor:
    """Eq. (5) with the unit direction ``u``: ``v - eps u``, projected onto [-1, 1] when ``clip``."""
    out = v - eps * u
    return out.clamp_(-1.0, 1.0) if clip else out


# ---------------------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------------------


def _validate(cfg: Any) -> None:
    """Check every field of a config dataclass with the rule in its ``metadata['check']``; coerce in place."""
    for f in fields(cfg):
        check = f.metadata.get("check")
        if check is not None:
            object.__setattr__(cfg, f.name, check(f.name, getattr(cfg, f.name)))


def _int(lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
    return {"check": lambda name, v: check_int(name, v, lo, hi)}


def _float(lo: float | None = None, hi: float | None = None, lo_inclusive: bool = True) -> dict[str, Any]:
    return {"check": lambda name, v: check_float(name, v, lo, hi, lo_inclusive=lo_inclusive)}


_BOOL: dict[str, Any] = {"check": check_bool}


def _field(default: Any, meta: dict[str, Any]) -> Any:
    return field(default=default, metadata=meta)


class _Preset:
    """``paper`` / ``cpu`` / ``smoke`` presets and ``preset(profile)`` for the config dataclasses."""

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def paper(cls, **kw: Any) -> Any:
        return cls(**{**cls._PRESETS["paper"], **kw})

    @classmethod
    def cpu(cls, **kw: Any) -> Any:
        return cls(**{**cls._PRESETS["cpu"], **kw})

    @classmethod
    def smoke(cls, **kw: Any) -> Any:
        return cls(**{**cls._PRESETS["smoke"], **kw})

    @classmethod
    def preset(cls, profile: str, **kw: Any) -> Any:
        check_choice("profile", profile, ("paper", "cpu", "smoke"))
        return getattr(cls, profile)(**kw)

    def replace(self, **kw: Any) -> Any:
        return replace(self, **kw)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class RubbishConfig(_Preset):
    """Rubbish images, section 3: Gaussian noise deformed by eq. (5) towards each class.

    * ``noise_std = sqrt(0.1) ~ 0.316``: the paper's ``N(0, 0.1)`` read in the usual ``N(mu, sigma^2)``
      notation (variance 0.1). ``noise_std=0.1`` is the other reading; the noise is only the starting point.
    * ``eps``: step of eq. (5), in L2 pixel units (an MNIST image has norm ~ 20, the noise ~ 8.9).
      0.1 moves a noise image to a fixed point in a few hundred steps.
    * ``clip``: projected gradient descent in the box [-1, 1]: the gradient components that point out of
      the box at pixels already on its faces are dropped, the rest normalised, and the step clipped. The
      models were trained only on images in [-1, 1] (8-bit intensities mapped linearly, Fig. 1); outside
      that box ``F_n`` is evaluated where no data ever were, and a "minimum" there would be an artefact of
      extrapolation, not an image. Clipping keeps every iterate a valid input.
    * Stopping, per image (:class:`RubbishResult` ``status``): ``converged`` once ``C^alpha <= tol^(2m)``
      (every output within about ``tol`` of its target); ``plateau`` once, over a window of ``patience``
      steps, ``C^alpha`` fell by less than a relative ``min_progress`` (``log C`` by ``min_progress``) and the
      image moved less than ``patience * eps / 10``: a fixed point of the projected dynamics (small-n
      models settle on a corner-like point of the box long before ``tol``); else ``max_steps``.
    * ``shared_noise``: one noise image per seed, deformed into all 10 classes (Fig. 3); else every image
      gets its own noise (the Fig. 6 data set). ``batch_size``: images run together.
    * ``float64_fallback``: where the float32 gradient of the model is exactly zero (``dD/dv`` underflows
      for noise images at large n), take the direction from a float64 copy of the model (DAM only).
    """

    eps: float = _field(0.1, _float(0.0, None, lo_inclusive=False))
    max_steps: int = _field(3000, _int(1, 10**7))
    noise_std: float = _field(math.sqrt(0.1), _float(0.0, 10.0))
    clip: bool = _field(True, _BOOL)
    tol: float = _field(0.01, _float(0.0, 1.0, lo_inclusive=False))
    patience: int = _field(100, _int(1, 10**7))
    min_progress: float = _field(1e-3, _float(0.0, None))
    shared_noise: bool = _field(True, _BOOL)
    float64_fallback: bool = _field(True, _BOOL)
    batch_size: int = _field(1000, _int(1, 10**6))

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "cpu": {"max_steps": 1500},
        "smoke": {"max_steps": 30, "patience": 10, "batch_size": 100},
    }

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True)
class DeformConfig(_Preset):
    """Decision-boundary deformations, section 4: follow ``-grad C^second`` from a clean image.

    * ``eps = 0.1``: step of eq. (5) in L2 pixel units. The paper needs it only "sufficiently small" to
      resolve the crossing; the crossing image is then refined by bisection on the last step, so ``eps``
      only sets how far past the boundary the *behind* image lies (at most ``eps``) and the cost (steps ~
      boundary distance / eps). Boundary distances of the DAM_n models are ~1-5 (median 2.4 at n = 2 and
      3.3 at n = 30 on intermediate checkpoints), so 0.1 is 2-4 % of the distance (~25-50 steps); on those
      models the bisected boundary moved by < 0.5 % of the distance and the transfer labels of the behind
      images agreed on >= 99 % of images between eps = 0.025 and 0.1 (:func:`step_size_sensitivity`).
    * ``clip``: projected steps in the box [-1, 1] (see :class:`RubbishConfig`).
    * ``to_convergence``: after the crossing keep going until C^second converges (the *final* image of
      Fig. 4); with False an image stops at the crossing (enough for the transfer table, Fig. 5).
    * ``tol``, ``patience``, ``min_progress``: the stopping rule of :class:`RubbishConfig`, on C^second. An
      image that reaches a plateau (or max_steps) *before* crossing is a failure: reported, never dropped.
    * ``bisect_steps``, ``boundary_rtol``, ``boundary_atol``: bisection stops when
      ``|D_top - D_second| <= boundary_atol + boundary_rtol * max(|D_top|, |D_second|)`` or after
      ``bisect_steps`` halvings (``atol`` ~ the float32 rounding of D near 0).
    * ``batch_size``: images per chunk (memory: a few chunk x 784 buffers).
    """

    eps: float = _field(0.1, _float(0.0, None, lo_inclusive=False))
    max_steps: int = _field(3000, _int(1, 10**7))
    clip: bool = _field(True, _BOOL)
    to_convergence: bool = _field(True, _BOOL)
    tol: float = _field(0.01, _float(0.0, 1.0, lo_inclusive=False))
    patience: int = _field(100, _int(1, 10**7))
    min_progress: float = _field(1e-3, _float(0.0, None))
    bisect_steps: int = _field(40, _int(0, 200))
    boundary_rtol: float = _field(1e-4, _float(0.0, 1.0))
    boundary_atol: float = _field(1e-5, _float(0.0, None))
    float64_fallback: bool = _field(True, _BOOL)
    batch_size: int = _field(2000, _int(1, 10**6))

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "cpu": {"max_steps": 1500},
        "smoke": {"max_steps": 40, "patience": 10, "batch_size": 100},
    }

    def __post_init__(self) -> None:
        _validate(self)


# ---------------------------------------------------------------------------------------------------------
# Per-image stopping and diagnostics
# ---------------------------------------------------------------------------------------------------------


class _Stopper:
    """Convergence / plateau bookkeeping for the images of a chunk (indexed by chunk position).

    Converged: ``log C <= 2m log(tol)``. Plateau, tested once every ``patience`` steps against an anchor
    (the image and its ``log C`` at the start of the window): ``log C`` fell by less than ``min_progress``
    *and* the image moved less than ``patience * eps / 10`` (a fixed point of the projected dynamics, or
    an oscillation of size ~eps around one). The displacement test keeps images alive that travel through
    a flat region where D, and so C, barely change (noise images of large-n models).
    """

    def __init__(self, v: torch.Tensor, m: int, tol: float, patience: int, min_progress: float, eps: float):
        B, dev = v.shape[0], v.device
        self.threshold = 2 * m * math.log(tol)  # log C <= log tol^(2m)
        self.patience, self.min_progress, self.min_move = patience, min_progress, patience * eps / 10
        self.anchor = v.clone()  # (B, 784)
        self.anchor_logc = torch.full((B,), math.inf, dtype=torch.float64, device=dev)
        self.anchor_step = torch.zeros(B, dtype=torch.long, device=dev)

    def reset(self, idx: torch.Tensor, v: torch.Tensor, step: int) -> None:
        """Start a new window for images ``idx`` (``v``: their current images)."""
        self.anchor[idx] = v
        self.anchor_logc[idx] = math.inf
        self.anchor_step[idx] = step

    def update(
        self, idx: torch.Tensor, v: torch.Tensor, logc: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Record images ``idx`` (``v`` (A, 784), ``log C`` (A,)) at ``step``; -> (converged, plateau)."""
        logc = logc.to(torch.float64)
        first = torch.isinf(self.anchor_logc[idx])
        self.anchor_logc[idx[first]] = logc[first]
        converged = logc <= self.threshold
        due = ~converged & (step - self.anchor_step[idx] >= self.patience)
        plateau = torch.zeros_like(converged)
        if due.any():
            j = idx[due]
            stuck = (logc[due] > self.anchor_logc[j] - self.min_progress) & (
                (v[due] - self.anchor[j]).norm(dim=1) < self.min_move
            )
            plateau[due] = stuck
            self.reset(j, v[due], step)
            self.anchor_logc[j] = logc[due]
        return converged, plateau


class _Counters:
    """Per-image step counts of the numerical diagnostics (see :class:`_Direction`)."""

    def __init__(self, n: int, device: torch.device):
        z = lambda: torch.zeros(n, dtype=torch.long, device=device)  # noqa: E731
        self.vanishing, self.underflow, self.zero = z(), z(), z()
        self.vanishing_at_start = torch.zeros(n, dtype=torch.bool, device=device)

    def add(self, idx: torch.Tensor, d: _Direction, step: int) -> None:
        self.vanishing[idx] += d.vanishing.long()
        self.underflow[idx] += d.underflow.long()
        self.zero[idx] += d.zero.long()
        if step == 0:
            self.vanishing_at_start[idx] = d.vanishing

    def out(self) -> dict[str, torch.Tensor]:
        return {"vanishing": self.vanishing.cpu(), "underflow": self.underflow.cpu(),
                "zero_gradient": self.zero.cpu(), "vanishing_at_start": self.vanishing_at_start.cpu()}


def _diagnostics(vanishing: torch.Tensor, underflow: torch.Tensor, zero: torch.Tensor) -> dict[str, int]:
    return {
        "images_with_vanishing_naive_gradient": int((vanishing > 0).sum()),
        "steps_with_vanishing_naive_gradient": int(vanishing.sum()),
        "images_with_float32_underflow": int((underflow > 0).sum()),
        "images_with_zero_gradient": int((zero > 0).sum()),
    }


# ---------------------------------------------------------------------------------------------------------
# Rubbish images (section 3)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RubbishResult:
    """Minima of the 10 objectives C^alpha reached from Gaussian noise (Fig. 3, Fig. 6).

    Image ``i`` targets class ``target[i] = i % 10``; with ``shared_noise`` images ``10 s .. 10 s + 9`` start
    from the same noise ``s``. ``status``: 1 converged (``C <= tol^(2m)``), 2 plateau (fixed point of the
    projected dynamics), 3 max_steps. Diagnostics, in steps per image: ``vanishing`` (the naive gradient,
    autograd through tanh, would have been exactly zero), ``underflow`` (the float32 gradient of the model
    was exactly zero; the float64 twin gave the direction), ``zero_gradient`` (no direction at all).
    """

    images: torch.Tensor  # (N, 784)
    start: torch.Tensor  # (N, 784) the noise each image started from
    target: torch.Tensor  # (N,) long
    steps: torch.Tensor  # (N,) long, updates applied
    status: torch.Tensor  # (N,) long
    log_objective: torch.Tensor  # (N,) log C^target of the returned image
    start_log_objective: torch.Tensor  # (N,) log C^target of the noise
    vanishing: torch.Tensor  # (N,) long
    vanishing_at_start: torch.Tensor  # (N,) bool
    underflow: torch.Tensor  # (N,) long
    zero_gradient: torch.Tensor  # (N,) long
    config: RubbishConfig
    m: int
    wall_time_s: float

    @property
    def converged(self) -> torch.Tensor:
        """Reached ``tol`` or a fixed point (plateau); False only for images stopped by ``max_steps``."""
        return (self.status == CONVERGED) | (self.status == PLATEAU)

    def summary(self) -> dict[str, Any]:
        """Counts for the chapter: converged / plateau / max_steps, steps, numerical diagnostics."""
        return {
            "images": len(self.target),
            "converged_tol": int((self.status == CONVERGED).sum()),
            "plateau": int((self.status == PLATEAU).sum()),
            "max_steps": int((self.status == MAX_STEPS).sum()),
            "median_steps": float(self.steps.double().median()),
            "median_log_objective": float(self.log_objective.double().median()),
            "max_log_objective": float(self.log_objective.max()),
            "vanishing_at_start": int(self.vanishing_at_start.sum()),
            **_diagnostics(self.vanishing, self.underflow, self.zero_gradient),
            "wall_time_s": round(self.wall_time_s, 2),
        }


def noise_images(
    n: int, std: float, seed: int, clip: bool = True, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n`` images of i.i.d. ``N(0, std^2)`` pixels drawn on the CPU from ``seed`` (same on every device),
    clipped to [-1, 1] when ``clip``; (n, 784)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 784, generator=g, dtype=torch.float64).mul_(std).to(dtype)
    return z.clamp_(-1.0, 1.0) if clip else z


def generate_rubbish(
    model: Classifier,
    m: int,
    n_per_class: int,
    cfg: RubbishConfig | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    start: torch.Tensor | None = None,
) -> RubbishResult:
    """Deform Gaussian noise into ``n_per_class`` images per class by eq. (5) on ``C^alpha`` of eq. (4).

    ``m``: the loss power of the model's training objective, eq. (3). ``start`` (N, 784) overrides the
    noise (``N = 10 n_per_class`` rows, image ``i`` targeting class ``i % 10``). Chunks of
    ``cfg.batch_size`` images; each image stops on its own (:class:`RubbishConfig`). Runs on ``device``
    (default: the model's); returns a :class:`RubbishResult` on the CPU.
    """
    cfg = cfg or RubbishConfig()
    m = check_int("m", m, 1, 1000)
    n_per_class = check_int("n_per_class", n_per_class, 1, 10**6)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    model = as_classifier(model)
    dev = torch.device(device) if device is not None else _model_device(model)
    dtype = _model_dtype(model)
    twin = float64_twin(model) if cfg.float64_fallback else None
    N = N_CLASSES * n_per_class
    t0 = time.perf_counter()
    if start is None:
        n_noise = n_per_class if cfg.shared_noise else N
        start = noise_images(n_noise, cfg.noise_std, seed, cfg.clip, dtype)
        if cfg.shared_noise:  # noise s -> images 10 s .. 10 s + 9
            start = start.repeat_interleave(N_CLASSES, 0)
    elif tuple(start.shape) != (N, 784):
        raise ValueError(f"start must have shape ({N}, 784), got {tuple(start.shape)}")
    target = torch.arange(N) % N_CLASSES

    parts = []
    for lo in range(0, N, cfg.batch_size):
        x = start[lo : lo + cfg.batch_size].to(dev, dtype)
        parts.append(_descend(model, twin, x, target[lo : lo + cfg.batch_size].to(dev), m, cfg))
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return RubbishResult(start=start.cpu(), target=target, config=cfg, m=m,
                         wall_time_s=time.perf_counter() - t0, **cat)


def _descend(
    model: Classifier,
    twin: Classifier | None,
    x: torch.Tensor,
    alpha: torch.Tensor,
    m: int,
    cfg: RubbishConfig,
) -> dict[str, torch.Tensor]:
    """Eq. (5) on C^alpha for one chunk, each image stopping on its own."""
    B, dev = x.shape[0], x.device
    v = x.clone()
    steps = torch.zeros(B, dtype=torch.long, device=dev)
    status = torch.zeros(B, dtype=torch.long, device=dev)
    logc_end = torch.zeros(B, dtype=torch.float64, device=dev)
    logc_start = torch.zeros(B, dtype=torch.float64, device=dev)
    stop = _Stopper(v, m, cfg.tol, cfg.patience, cfg.min_progress, cfg.eps)
    count = _Counters(B, dev)
    active = torch.arange(B, device=dev)
    for step in range(cfg.max_steps + 1):
        va = v[active]
        d = _direction(model, twin, va, alpha[active], m, cfg.clip)
        count.add(active, d, step)
        logc = log_objective(d.D, alpha[active], m)  # (A,)
        if step == 0:
            logc_start[active] = logc.double()
        conv, plateau = stop.update(active, va, logc, step)
        done = conv | plateau | (step == cfg.max_steps)
        if done.any():
            idx = active[done]
            status[idx] = torch.where(conv[done], CONVERGED, torch.where(plateau[done], PLATEAU, MAX_STEPS))
            steps[idx] = step
            logc_end[idx] = logc[done].double()
        active, u = active[~done], d.u[~done]
        if active.numel() == 0:
            break
        v[active] = _step(v[active], u, cfg.eps, cfg.clip)
    return {"images": v.cpu(), "steps": steps.cpu(), "status": status.cpu(), "log_objective": logc_end.cpu(),
            "start_log_objective": logc_start.cpu(), **count.out()}


# ---------------------------------------------------------------------------------------------------------
# Decision-boundary deformation (section 4)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class DeformTrace:
    """Per-step record of a few images (Fig. 4, top panel), padded with NaN after an image stops.

    ``log_c_top[j, k]``, ``log_c_second[j, k]`` and ``gap[j, k] = D_top - D_second`` at step ``k`` of image
    ``index[j]``; ``snapshots[j, s]``: the image at step ``snapshot_steps[s]`` (NaN once it stopped).
    """

    index: torch.Tensor  # (J,) positions in the input batch
    log_c_top: torch.Tensor  # (J, L)
    log_c_second: torch.Tensor  # (J, L)
    gap: torch.Tensor  # (J, L)
    snapshot_steps: torch.Tensor  # (S,)
    snapshots: torch.Tensor | None  # (J, S, 784)


@dataclass
class DeformResult:
    """Clean images deformed along ``-grad C^second`` (section 4, Fig. 4) and the images kept for Fig. 5.

    * ``boundary``: the crossing image, refined by bisection so that ``D_top = D_second`` (``boundary_gap``).
    * ``behind``: the first iterate past the crossing ("one step behind the decision boundary", section 5),
      classified ``behind_pred``: the second choice, unless a third class overtook both
      (``behind_is_second``). The adversarial image of the transfer table.
    * ``final``: the image when C^second converged (``None`` unless ``to_convergence``).
    * Images that never crossed (``crossed`` False: failures) keep their last iterate in ``boundary`` and
      ``behind``; select with ``crossed``; ``summary()`` counts them.
    * ``cross_step``: steps to reach ``behind`` (-1 if never); ``steps``: steps taken in all; ``status``:
      1 converged, 2 plateau, 3 max_steps (after the crossing, or before it for failures), 4 stopped at the
      crossing (``to_convergence=False``). Diagnostics as in :class:`RubbishResult`.
    """

    clean: torch.Tensor  # (N, 784)
    top: torch.Tensor  # (N,)
    second: torch.Tensor  # (N,)
    boundary: torch.Tensor  # (N, 784)
    behind: torch.Tensor  # (N, 784)
    final: torch.Tensor | None  # (N, 784)
    boundary_gap: torch.Tensor  # (N,) D_top - D_second at the boundary image
    boundary_scale: torch.Tensor  # (N,) max(|D_top|, |D_second|) there
    behind_pred: torch.Tensor  # (N,)
    crossed: torch.Tensor  # (N,) bool
    cross_step: torch.Tensor  # (N,) long
    steps: torch.Tensor  # (N,) long
    status: torch.Tensor  # (N,) long
    final_log_objective: torch.Tensor  # (N,) log C^second at the last iterate
    vanishing: torch.Tensor  # (N,) long
    vanishing_at_start: torch.Tensor  # (N,) bool
    underflow: torch.Tensor  # (N,) long
    zero_gradient: torch.Tensor  # (N,) long
    trace: DeformTrace | None
    config: DeformConfig
    m: int
    wall_time_s: float

    @property
    def converged(self) -> torch.Tensor:
        """Crossed, then reached ``tol`` or a fixed point (only meaningful with ``to_convergence``)."""
        return self.crossed & ((self.status == CONVERGED) | (self.status == PLATEAU))

    @property
    def failed(self) -> torch.Tensor:
        return ~self.crossed

    @property
    def behind_is_second(self) -> torch.Tensor:
        return self.crossed & (self.behind_pred == self.second)

    def boundary_distance(self) -> torch.Tensor:
        """``||boundary - clean||_2`` per image (NaN for failures); (N,)."""
        d = (self.boundary - self.clean).norm(dim=1)
        return torch.where(self.crossed, d, torch.full_like(d, math.nan))

    def behind_distance(self) -> torch.Tensor:
        """``||behind - clean||_2`` per image (NaN for failures); (N,)."""
        d = (self.behind - self.clean).norm(dim=1)
        return torch.where(self.crossed, d, torch.full_like(d, math.nan))

    def relative_boundary_gap(self) -> torch.Tensor:
        """``|D_top - D_second| / max(|D_top|, |D_second|)`` at the boundary image (NaN: failures); (N,)."""
        tiny = torch.finfo(self.boundary_scale.dtype).tiny
        return self.boundary_gap.abs() / self.boundary_scale.clamp_min(tiny)

    def summary(self) -> dict[str, Any]:
        """Counts and medians for the chapter: failures and numerical diagnostics are reported, not hidden."""
        c = self.crossed
        some = bool(c.any())
        dist = float(self.boundary_distance()[c].double().median()) if some else math.nan
        return {
            "images": len(self.top),
            "crossed": int(c.sum()),
            "failed": int((~c).sum()),
            "behind_is_second": int(self.behind_is_second.sum()),
            "behind_is_third_class": int((c & ~self.behind_is_second).sum()),
            "converged": int(self.converged.sum()) if self.config.to_convergence else None,
            "median_cross_step": float(self.cross_step[c].double().median()) if some else math.nan,
            "median_steps": float(self.steps.double().median()),
            "median_boundary_distance": dist,
            "max_abs_boundary_gap": float(self.boundary_gap[c].abs().max()) if some else math.nan,
            **_diagnostics(self.vanishing, self.underflow, self.zero_gradient),
            "wall_time_s": round(self.wall_time_s, 2),
        }


def _gap(D: torch.Tensor, top: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``D_top - D_second`` and ``max(|D_top|, |D_second|)``; (B,) each."""
    r = torch.arange(D.shape[0], device=D.device)
    dt, ds = D[r, top], D[r, second]
    return dt - ds, torch.maximum(dt.abs(), ds.abs())


@torch.no_grad()
def refine_boundary(
    model: Classifier,
    before: torch.Tensor,
    after: torch.Tensor,
    top: torch.Tensor,
    second: torch.Tensor,
    steps: int = 40,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bisection on the segment ``before -> after`` (``D_top > D_second`` at ``before``, ``<`` at ``after``)
    for the point where ``D_top = D_second``, i.e. ``C^top = C^second`` (``tanh`` and
    ``y -> (y - 1)^2m - (y + 1)^2m`` are strictly monotone; D does not saturate, so the test stays sharp).

    Returns ``(boundary, gap, scale)``: images (B, 784), ``D_top - D_second`` and ``max(|D_top|, |D_second|)``
    there (B,). An image stops once ``|gap| <= atol + rtol * scale``; the best point found is returned.
    """
    lo, hi = before.clone(), after.clone()
    g_lo, s_lo = _gap(model.energy_difference(lo), top, second)
    g_hi, s_hi = _gap(model.energy_difference(hi), top, second)
    pick_lo = g_lo.abs() <= g_hi.abs()
    best = torch.where(pick_lo.unsqueeze(1), lo, hi)
    best_gap, best_scale = torch.where(pick_lo, g_lo, g_hi), torch.where(pick_lo, s_lo, s_hi)
    todo = torch.nonzero(best_gap.abs() > atol + rtol * best_scale).squeeze(1)
    for _ in range(steps):
        if todo.numel() == 0:
            break
        mid = 0.5 * (lo[todo] + hi[todo])
        g, s = _gap(model.energy_difference(mid), top[todo], second[todo])
        above = (g > 0).unsqueeze(1)
        lo[todo] = torch.where(above, mid, lo[todo])
        hi[todo] = torch.where(above, hi[todo], mid)
        better = g.abs() < best_gap[todo].abs()
        best[todo] = torch.where(better.unsqueeze(1), mid, best[todo])
        best_gap[todo] = torch.where(better, g, best_gap[todo])
        best_scale[todo] = torch.where(better, s, best_scale[todo])
        todo = todo[best_gap[todo].abs() > atol + rtol * best_scale[todo]]
    return best, best_gap, best_scale


def _as_index(trace: int | Sequence[int] | torch.Tensor | None, N: int) -> torch.Tensor:
    if trace is None:
        return torch.zeros(0, dtype=torch.long)
    if isinstance(trace, int):
        return torch.arange(min(check_int("trace", trace, 0, None), N))
    idx = torch.as_tensor(trace, dtype=torch.long).reshape(-1)
    if idx.numel() and (idx.min() < 0 or idx.max() >= N):
        raise ParameterError(f"Parameter 'trace' = {trace!r} is invalid: indices must lie in 0..{N - 1}.")
    return idx


class _TraceRecorder:
    """Collects the traced images' per-step values (chunk position -> row of the trace)."""

    def __init__(self, n_rows: int, every: int):
        self.top: list[list[float]] = [[] for _ in range(n_rows)]
        self.second: list[list[float]] = [[] for _ in range(n_rows)]
        self.gap: list[list[float]] = [[] for _ in range(n_rows)]
        self.snap: list[dict[int, torch.Tensor]] = [{} for _ in range(n_rows)]
        self.every = every
        self.local: dict[int, int] = {}  # chunk position -> row, set per chunk

    def record(self, step: int, active: torch.Tensor, v: torch.Tensor, D: torch.Tensor, top: torch.Tensor,
               second: torch.Tensor, m: int) -> None:
        if not self.local:
            return
        pos = [(k, self.local[i]) for k, i in enumerate(active.tolist()) if i in self.local]
        if not pos:
            return
        rows = torch.tensor([k for k, _ in pos], device=D.device)
        d, tp, sc = D[rows], top[rows], second[rows]
        lt, ls = log_objective(d, tp, m).tolist(), log_objective(d, sc, m).tolist()
        gp = _gap(d, tp, sc)[0].tolist()
        for (k, j), a, b, c in zip(pos, lt, ls, gp, strict=True):
            self.top[j].append(a)
            self.second[j].append(b)
            self.gap[j].append(c)
            if self.every and step % self.every == 0:
                self.snap[j][step] = v[k].detach().cpu().clone()

    def result(self, index: torch.Tensor, dtype: torch.dtype) -> DeformTrace:
        L = max((len(r) for r in self.top), default=0)

        def pad(rows: list[list[float]]) -> torch.Tensor:
            out = torch.full((len(rows), L), math.nan, dtype=torch.float64)
            for j, r in enumerate(rows):
                out[j, : len(r)] = torch.tensor(r, dtype=torch.float64)
            return out

        snap_steps = sorted({s for d in self.snap for s in d})
        snaps = None
        if snap_steps:
            snaps = torch.full((len(self.snap), len(snap_steps), 784), math.nan, dtype=dtype)
            for j, d in enumerate(self.snap):
                for k, s in enumerate(snap_steps):
                    if s in d:
                        snaps[j, k] = d[s]
        steps = torch.tensor(snap_steps, dtype=torch.long)
        return DeformTrace(index, pad(self.top), pad(self.second), pad(self.gap), steps, snaps)


def deform(
    model: Classifier,
    x: torch.Tensor,
    m: int,
    cfg: DeformConfig | None = None,
    *,
    trace: int | Sequence[int] | torch.Tensor | None = None,
    snapshot_every: int = 0,
    progress: bool = False,
) -> DeformResult:
    """Deform clean images ``x`` (N, 784) along ``-grad C^second`` (eq. (5)) across the decision boundary.

    Top and second choice are the two largest ``D`` of the clean image. Every step tests
    ``D_top - D_second``; the crossing is the first iterate with ``D_second > D_top`` (equivalently
    ``C^second < C^top``, Fig. 4), and the boundary image is refined by bisection on that last step
    (:func:`refine_boundary`). Images run in chunks of ``cfg.batch_size``; inside a chunk an image leaves
    the active set as soon as it is done (crossed; or converged after crossing with ``to_convergence``).

    ``m``: the loss power of the model's training objective. ``trace``: the number of leading images
    (or their indices) whose ``log C^top``, ``log C^second`` and ``D_top - D_second`` are recorded at every
    step, with image snapshots every ``snapshot_every`` steps (0: none). Runs on the device of ``x``;
    results come back on the CPU.
    """
    cfg = cfg or DeformConfig()
    m = check_int("m", m, 1, 1000)
    snapshot_every = check_int("snapshot_every", snapshot_every, 0, None)
    model = as_classifier(model)
    if x.ndim != 2 or x.shape[1] != 784:
        raise ValueError(f"x must have shape (N, 784), got {tuple(x.shape)}")
    N = x.shape[0]
    t0 = time.perf_counter()
    twin = float64_twin(model) if cfg.float64_fallback else None
    index = _as_index(trace, N)
    rec = _TraceRecorder(len(index), snapshot_every)
    parts: list[dict[str, torch.Tensor | None]] = []
    for lo in range(0, N, cfg.batch_size):
        chunk = x[lo : lo + cfg.batch_size]
        rec.local = {int(i) - lo: j for j, i in enumerate(index.tolist()) if lo <= i < lo + len(chunk)}
        parts.append(_deform_chunk(model, twin, chunk, m, cfg, rec))
        if progress:
            print(f"deform: {lo + len(chunk)}/{N} images, {time.perf_counter() - t0:.1f} s", flush=True)
    cat = {k: torch.cat([p[k] for p in parts]) if parts[0][k] is not None else None for k in parts[0]}
    tr = rec.result(index, x.dtype) if len(index) else None
    return DeformResult(clean=x.detach().cpu(), trace=tr, config=cfg, m=m,
                        wall_time_s=time.perf_counter() - t0, **cat)


def _deform_chunk(
    model: Classifier,
    twin: Classifier | None,
    x: torch.Tensor,
    m: int,
    cfg: DeformConfig,
    rec: _TraceRecorder,
) -> dict[str, torch.Tensor | None]:
    """Section 4 on one chunk; see :func:`deform`."""
    B, dev = x.shape[0], x.device
    top, second = _energy(model, x).topk(2, dim=1).indices.unbind(1)  # (B,), (B,)
    v = x.detach().clone()
    before = v.clone()  # last iterate with D_top >= D_second, for the bisection
    behind = v.clone()
    crossed = torch.zeros(B, dtype=torch.bool, device=dev)
    cross_step = torch.full((B,), -1, dtype=torch.long, device=dev)
    steps = torch.zeros(B, dtype=torch.long, device=dev)
    status = torch.zeros(B, dtype=torch.long, device=dev)
    logc_end = torch.zeros(B, dtype=torch.float64, device=dev)
    stop = _Stopper(v, m, cfg.tol, cfg.patience, cfg.min_progress, cfg.eps)
    count = _Counters(B, dev)
    active = torch.arange(B, device=dev)
    for step in range(cfg.max_steps + 1):
        va, sa = v[active], second[active]
        d = _direction(model, twin, va, sa, m, cfg.clip)
        count.add(active, d, step)
        rec.record(step, active, va, d.D, top[active], sa, m)
        logc = log_objective(d.D, sa, m)  # (A,) log C^second
        new = ~crossed[active] & (_gap(d.D, top[active], sa)[0] < 0)  # first iterate with D_second > D_top
        if new.any():
            idx = active[new]
            crossed[idx] = True
            cross_step[idx] = step
            behind[idx] = va[new]
            stop.reset(idx, va[new], step)  # the final image's convergence clock starts at the crossing
        conv, plateau = stop.update(active, va, logc, step)
        ca = crossed[active]
        if cfg.to_convergence:
            done = conv | plateau | (step == cfg.max_steps)
        else:
            done = ca | plateau | (step == cfg.max_steps)
        if done.any():
            idx = active[done]
            code = torch.where(conv[done], CONVERGED, torch.where(plateau[done], PLATEAU, MAX_STEPS))
            if not cfg.to_convergence:
                code = torch.where(ca[done], AT_CROSSING, code)
            status[idx] = code
            steps[idx] = step
            logc_end[idx] = logc[done].double()
            lost = done & ~ca  # failures keep their last iterate
            behind[active[lost]] = va[lost]
        active, u = active[~done], d.u[~done]
        if active.numel() == 0:
            break
        not_crossed = ~crossed[active]
        before[active[not_crossed]] = v[active[not_crossed]]
        v[active] = _step(v[active], u, cfg.eps, cfg.clip)

    boundary = behind.clone()
    gap_b = torch.full((B,), math.nan, dtype=x.dtype, device=dev)
    scale_b = torch.full((B,), math.nan, dtype=x.dtype, device=dev)
    ci = torch.nonzero(crossed).squeeze(1)
    if ci.numel():
        b, gb, sb = refine_boundary(model, before[ci], behind[ci], top[ci], second[ci], cfg.bisect_steps,
                                    cfg.boundary_rtol, cfg.boundary_atol)
        boundary[ci], gap_b[ci], scale_b[ci] = b, gb, sb
    behind_pred = _energy(model, behind).argmax(1)
    return {
        "top": top.cpu(), "second": second.cpu(), "boundary": boundary.cpu(), "behind": behind.cpu(),
        "final": v.cpu() if cfg.to_convergence else None, "boundary_gap": gap_b.cpu(),
        "boundary_scale": scale_b.cpu(), "behind_pred": behind_pred.cpu(), "crossed": crossed.cpu(),
        "cross_step": cross_step.cpu(), "steps": steps.cpu(), "status": status.cpu(),
        "final_log_objective": logc_end.cpu(), **count.out(),
    }


# ---------------------------------------------------------------------------------------------------------
# Step-size sensitivity (for the chapter's table)
# ---------------------------------------------------------------------------------------------------------


def _median(t: torch.Tensor) -> float:
    return float(t.double().median()) if t.numel() else math.nan


def _percent(t: torch.Tensor) -> float:
    return 100.0 * float(t.double().mean()) if t.numel() else math.nan


def step_size_sensitivity(
    model: Classifier,
    x: torch.Tensor,
    m: int,
    eps_values: Sequence[float],
    cfg: DeformConfig | None = None,
    labels: torch.Tensor | None = None,
    transfer: Mapping[str, Classifier] | None = None,
) -> list[dict[str, Any]]:
    """Run :func:`deform` (to the crossing only) at several step sizes on the same images.

    One row per ``eps`` (rows sorted by eps; the smallest is the reference): crossings, failures, median
    steps to the crossing, median ``||boundary - clean||`` and ``||behind - clean||``, the median
    ``||boundary_eps - boundary_ref||`` (does the crossing point depend on eps?), the share of behind
    images classified as the second choice; and for every model in ``transfer`` its error on the behind
    images (% whose label differs from ``labels``, default the clean top choice) and its label agreement
    with the reference eps (%, over images that crossed at both). Plain dicts: feed them to
    :func:`dam_utils.metrics.markdown_table`.
    """
    cfg = (cfg or DeformConfig()).replace(to_convergence=False)
    eps_sorted = sorted(check_float("eps", e, 0.0, None, lo_inclusive=False) for e in eps_values)
    if not eps_sorted:
        raise ParameterError("Parameter 'eps_values' = [] is invalid: must list at least one step size.")
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"labels has {len(labels)} entries for {len(x)} images")
    transfer = {k: as_classifier(v) for k, v in (transfer or {}).items()}
    dev = x.device
    rows: list[dict[str, Any]] = []
    ref: DeformResult | None = None
    ref_pred: dict[str, torch.Tensor] = {}
    for eps in eps_sorted:
        res = deform(model, x, m, cfg.replace(eps=eps))
        c = res.crossed
        truth = labels.cpu() if labels is not None else res.top
        row: dict[str, Any] = {
            "eps": eps,
            "crossed": int(c.sum()),
            "failed": int((~c).sum()),
            "median_cross_step": _median(res.cross_step[c]),
            "median_boundary_dist": _median(res.boundary_distance()[c]),
            "median_behind_dist": _median(res.behind_distance()[c]),
            "behind_is_second_%": _percent(res.behind_is_second[c]),
            "wall_time_s": res.wall_time_s,
        }
        if ref is None:
            ref = res
        both = c & ref.crossed
        row["median_boundary_shift"] = _median((res.boundary - ref.boundary)[both].norm(dim=1))
        for name, clf in transfer.items():
            pred = _energy(clf, res.behind.to(dev)).argmax(1).cpu()
            row[f"{name}_error_%"] = _percent((pred != truth)[c])
            if name not in ref_pred:
                ref_pred[name] = pred
            row[f"{name}_agree_%"] = _percent((pred == ref_pred[name])[both])
        rows.append(row)
    return rows
