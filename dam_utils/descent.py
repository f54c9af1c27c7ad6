"""The machinery shared by the two gradient attacks of Krotov & Hopfield (2018), rubbish images (section 3,
:mod:`dam_utils.rubbish`) and decision-boundary deformations (section 4, :mod:`dam_utils.deform`): both
iterate eq. (5), ``v <- v - eps u(dC/dv)``, on a batch of images, each image stopping on its own.

* :func:`direction`: the unit direction of one step for a batch, from the stable gradient of eq. (4)
  (:func:`dam_utils.objectives.objective_gradient`), with the float64 fallback where float32 underflows and
  the projection onto the box [-1, 1]; and the step's numerical diagnostics (:class:`Direction`).
* :func:`take_step`: the update of eq. (5) itself, clipped to the box.
* :class:`Stopper`: convergence / plateau bookkeeping per image; :class:`Counters`: per-image step counts
  of the diagnostics; :func:`diagnostics`: their summary.
* The status codes an image's run ends with (:data:`STATUS_NAMES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .objectives import Classifier, model_loss, naive_weights_vanish, objective_gradient, project, unit

__all__ = [
    "AT_CROSSING",
    "CONVERGED",
    "MAX_STEPS",
    "PLATEAU",
    "RUNNING",
    "STALLED",
    "STATUS_NAMES",
    "Counters",
    "Direction",
    "Stopper",
    "diagnostics",
    "direction",
    "energy",
    "model_device",
    "model_dtype",
    "take_step",
]

# Status codes of an image's run (RubbishResult.status, DeformResult.status).
RUNNING, CONVERGED, PLATEAU, MAX_STEPS, AT_CROSSING, STALLED = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {RUNNING: "running", CONVERGED: "converged", PLATEAU: "plateau", MAX_STEPS: "max_steps",
                AT_CROSSING: "stopped at the crossing", STALLED: "stalled (no memory active)"}


def model_device(model: Classifier, fallback: torch.device | str = "cpu") -> torch.device:
    """The device of ``model`` (its ``device`` attribute), else ``fallback``."""
    dev = getattr(model, "device", None)
    return torch.device(dev) if dev is not None else torch.device(fallback)


def model_dtype(model: Classifier) -> torch.dtype:
    """The dtype of a DAM-like model's weights ``xi``, else torch's default dtype."""
    xi = getattr(model, "xi", None)
    return xi.dtype if isinstance(xi, torch.Tensor) else torch.get_default_dtype()


@torch.no_grad()
def energy(model: Classifier, v: torch.Tensor) -> torch.Tensor:
    """``D`` (B, 10) of ``v`` (B, 784) without autograd."""
    return model.energy_difference(v)


@dataclass
class Direction:
    """Per-step unit direction of eq. (5) for a batch, with the numerical diagnostics of that step."""

    u: torch.Tensor  # (A, 784) unit (projected) descent direction, zero rows where none
    D: torch.Tensor  # (A, 10) outputs at v, model dtype
    vanishing: torch.Tensor  # (A,) naive dC/dD exactly zero (tanh saturation)
    underflow: torch.Tensor  # (A,) float32 gradient zero or subnormal (< finfo.tiny); float64 twin used
    zero: torch.Tensor  # (A,) no usable direction at all (after the fallback and the projection)
    flat: torch.Tensor  # (A,) every D exactly 0 and the gradient exactly 0 (no memory active), best dtype


def direction(
    model: Classifier, twin: Classifier | None, v: torch.Tensor, alpha: torch.Tensor, m: int, clip: bool
) -> Direction:
    """Unit direction of eq. (5) for images ``v`` (A, 784) descending ``C^alpha`` (``alpha`` (A,)).

    Stable gradient of C^alpha (:func:`dam_utils.objectives.objective_gradient`); where it is zero or
    subnormal because ``dD/dv`` underflows inside the model (e.g. ``relu(x/T)^29`` of a noise image at
    n = 30 is below the float32 range), the direction is recomputed with the float64 ``twin``; then
    projected onto the box. ``flat`` marks images where no memory is active: every ``D`` and the whole
    gradient are exactly 0, in float64 where the twin was used.
    """
    g, D = objective_gradient(model, v, alpha, m)  # (A, 784), (A, 10)
    if model_loss(model) == "dam":
        vanishing = naive_weights_vanish(D, alpha, m)
    else:  # cross-entropy has no tanh to saturate
        vanishing = torch.zeros(D.shape[0], dtype=torch.bool, device=D.device)
    underflow = g.abs().amax(1) < torch.finfo(g.dtype).tiny  # zero or subnormal: no reliable direction
    flat = (D == 0).all(1) & (g == 0).all(1)
    u = unit(g)
    if twin is not None and underflow.any():
        g64, D64 = objective_gradient(twin, v[underflow].double(), alpha[underflow], m)
        u[underflow] = unit(g64).to(u.dtype)  # normalise in float64 first: |g64| may be ~1e-60
        flat[underflow] = (D64 == 0).all(1) & (g64 == 0).all(1)
    if clip:
        u = unit(project(u, v))
    zero = (u == 0).all(1)
    return Direction(u, D, vanishing, underflow, zero, flat)


def take_step(v: torch.Tensor, u: torch.Tensor, eps: float, clip: bool) -> torch.Tensor:
    """Eq. (5) with the unit direction ``u``: ``v - eps u``, projected onto [-1, 1] when ``clip``; (A, 784)."""
    out = v - eps * u
    return out.clamp_(-1.0, 1.0) if clip else out


class Stopper:
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


class Counters:
    """Per-image step counts of the numerical diagnostics (see :class:`Direction`)."""

    def __init__(self, n: int, device: torch.device):
        self.vanishing = torch.zeros(n, dtype=torch.long, device=device)
        self.underflow = torch.zeros(n, dtype=torch.long, device=device)
        self.zero = torch.zeros(n, dtype=torch.long, device=device)
        self.vanishing_at_start = torch.zeros(n, dtype=torch.bool, device=device)

    def add(self, idx: torch.Tensor, d: Direction, step: int) -> None:
        self.vanishing[idx] += d.vanishing.long()
        self.underflow[idx] += d.underflow.long()
        self.zero[idx] += d.zero.long()
        if step == 0:
            self.vanishing_at_start[idx] = d.vanishing

    def out(self) -> dict[str, torch.Tensor]:
        return {"vanishing": self.vanishing.cpu(), "underflow": self.underflow.cpu(),
                "zero_gradient": self.zero.cpu(), "vanishing_at_start": self.vanishing_at_start.cpu()}


def diagnostics(vanishing: torch.Tensor, underflow: torch.Tensor, zero: torch.Tensor) -> dict[str, int]:
    """Image and step counts of the diagnostics of :class:`Counters`, for a result's ``summary()``."""
    return {
        "images_with_vanishing_naive_gradient": int((vanishing > 0).sum()),
        "steps_with_vanishing_naive_gradient": int(vanishing.sum()),
        "images_with_float32_underflow": int((underflow > 0).sum()),
        "images_with_zero_gradient": int((zero > 0).sum()),
    }
