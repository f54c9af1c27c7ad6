"""Rubbish images, Krotov & Hopfield (2018) section 3 (Fig. 3; the data set of Fig. 6): Gaussian noise
deformed by eq. (5) until it minimises the objective ``C^alpha`` of eq. (4) of one class.

Objective: ``C^alpha = sum_gamma (Y_gamma - t^(alpha)_gamma)^(2m)`` (:mod:`dam_utils.objectives`), steps of
L2 length ``eps`` along ``-u(dC^alpha/dv)``, projected onto the pixel box [-1, 1] (:mod:`dam_utils.descent`).

Stalls: where no memory is active (every ``a_mu + 2 xc^mu_alpha <= 0`` and ``a_mu <= 0``), every output
``D`` and the whole gradient are exactly 0: eq. (5) has no direction and the image cannot move. Such a
descent is not tuned away; it keeps its stopping rule, and the result marks it ``stalled`` (status
:data:`~dam_utils.descent.STALLED`, counted apart from converged, plateau and max_steps images).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .descent import (
    CONVERGED,
    MAX_STEPS,
    PLATEAU,
    STALLED,
    Counters,
    Stopper,
    diagnostics,
    direction,
    model_device,
    model_dtype,
    take_step,
)
from .model import N_CLASSES, N_PIXELS
from .objectives import Classifier, as_classifier, float64_twin, log_objective
from .params import Preset, bool_field, check_int, float_field, int_field

__all__ = ["RubbishConfig", "RubbishResult", "generate_rubbish", "noise_images"]


@dataclass(frozen=True)
class RubbishConfig(Preset):
    """Rubbish images, section 3: Gaussian noise deformed by eq. (5) towards each class.

    * ``noise_std = sqrt(0.1) ~ 0.316``: the paper's ``N(0, 0.1)`` read in the usual ``N(mu, sigma^2)``
      notation (variance 0.1). ``noise_std=0.1`` is the other reading; the noise is only the starting point.
    * ``eps``: step of eq. (5), in L2 pixel units (an MNIST digit has norm ~ 27 in [-1, 1] pixels, the noise ~ 8.9).
    * ``clip``: projected gradient descent in the box [-1, 1]: the gradient components that point out of
      the box at pixels already on its faces are dropped, the rest normalised, and the step clipped. The
      models were trained only on images in [-1, 1] (8-bit intensities mapped linearly, Fig. 1); outside
      that box ``F_n`` is evaluated where no data ever were, and a "minimum" there would be an artefact of
      extrapolation, not an image. Clipping keeps every iterate a valid input.
    * Stopping, per image (:class:`RubbishResult` ``status``): ``converged`` once ``C^alpha <= tol^(2m)``
      (every output within about ``tol`` of its target); ``plateau`` once, over a window of ``patience``
      steps, ``log C^alpha`` fell by less than ``min_progress`` and the image moved less than
      ``patience * eps / 10``: a fixed point of the projected dynamics; else ``max_steps``. A run that
      ends where no memory is active is labelled ``stalled`` instead (see the module docstring).
    * ``shared_noise``: one noise image per seed, deformed into all 10 classes (Fig. 3); else every image
      gets its own noise (the Fig. 6 data set). ``batch_size``: images run together.
    * ``float64_fallback``: where the float32 gradient of the model is exactly zero (``dD/dv`` underflows
      for noise images at large n), take the direction from a float64 copy of the model (DAM only).
    """

    eps: float = float_field(0.1, 0.0, None, lo_inclusive=False)
    max_steps: int = int_field(3000, 1, 10**7)
    noise_std: float = float_field(math.sqrt(0.1), 0.0, 10.0)
    clip: bool = bool_field(True)
    tol: float = float_field(0.01, 0.0, 1.0, lo_inclusive=False)
    patience: int = int_field(100, 1, 10**7)
    min_progress: float = float_field(1e-3, 0.0, None)
    shared_noise: bool = bool_field(True)
    float64_fallback: bool = bool_field(True)
    batch_size: int = int_field(1000, 1, 10**6)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "cpu": {"max_steps": 1500},
        "smoke": {"max_steps": 30, "patience": 10, "batch_size": 100},
    }


@dataclass
class RubbishResult:
    """Minima of the 10 objectives C^alpha reached from Gaussian noise (Fig. 3, Fig. 6).

    Image ``i`` targets class ``target[i] = i % 10``; with ``shared_noise`` images ``10 s .. 10 s + 9`` start
    from the same noise ``s``. ``status``: 1 converged (``C <= tol^(2m)``), 2 plateau (fixed point of the
    projected dynamics), 3 max_steps, 5 stalled (``stalled``: the run ended where every output ``D`` and the
    gradient are exactly 0, no memory active; whatever stopped it). Diagnostics, in steps per image:
    ``vanishing`` (the naive gradient, autograd through tanh, would have been exactly zero), ``underflow``
    (the float32 gradient of the model was exactly zero; the float64 twin gave the direction),
    ``zero_gradient`` (no direction at all).
    """

    images: torch.Tensor  # (N, 784)
    start: torch.Tensor  # (N, 784) the noise each image started from
    target: torch.Tensor  # (N,) long
    steps: torch.Tensor  # (N,) long, updates applied
    status: torch.Tensor  # (N,) long
    stalled: torch.Tensor  # (N,) bool, ended with no memory active (status STALLED)
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
        """Reached ``tol`` or a fixed point (plateau); False for images stopped by ``max_steps`` and for
        stalled images (no memory active: not a minimum of C^alpha, only a point it cannot leave)."""
        return (self.status == CONVERGED) | (self.status == PLATEAU)

    def summary(self) -> dict[str, Any]:
        """Counts for the chapter: converged / plateau / max_steps / stalled (they add up to ``images``),
        steps, numerical diagnostics."""
        return {
            "images": len(self.target),
            "converged_tol": int((self.status == CONVERGED).sum()),
            "plateau": int((self.status == PLATEAU).sum()),
            "max_steps": int((self.status == MAX_STEPS).sum()),
            "stalled": int(self.stalled.sum()),
            "median_steps": float(self.steps.double().median()),
            "median_log_objective": float(self.log_objective.double().median()),
            "max_log_objective": float(self.log_objective.max()),
            "vanishing_at_start": int(self.vanishing_at_start.sum()),
            **diagnostics(self.vanishing, self.underflow, self.zero_gradient),
            "wall_time_s": round(self.wall_time_s, 2),
        }


def noise_images(
    n: int, std: float, seed: int, clip: bool = True, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n`` images of i.i.d. ``N(0, std^2)`` pixels drawn on the CPU from ``seed`` (same on every device),
    clipped to [-1, 1] when ``clip``; (n, 784)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, N_PIXELS, generator=g, dtype=torch.float64).mul_(std).to(dtype)
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
    """Rubbish images of section 3: noise deformed into ``n_per_class`` images of every class.

    Paper: Krotov & Hopfield (2018), section 3, eqs. (4)-(5), Fig. 3.
    Objective: ``C^alpha`` of eq. (4) for the image's target class; steps of L2 length ``cfg.eps``.

    Arguments:
        model: a :class:`~dam_utils.objectives.Classifier` (a DAM, or a callable returning D).
        m: the loss power of the model's training objective, eq. (3).
        n_per_class: images per class (``N = 10 n_per_class``).
        cfg: :class:`RubbishConfig` (Default: ``RubbishConfig()``, the paper preset).
        seed: seed of the noise (Default: 0).
        device: where to run (Default: the model's device).
        start: (N, 784) starting images overriding the noise; image ``i`` targets class ``i % 10``.

    Shape: noise and images (N, 784) in [-1, 1] (with ``clip``), targets (N,).
    Returns: a :class:`RubbishResult` on the CPU. Chunks of ``cfg.batch_size`` images; each image stops on
    its own (:class:`RubbishConfig`).
    """
    cfg = cfg or RubbishConfig()
    m = check_int("m", m, 1, 1000)
    n_per_class = check_int("n_per_class", n_per_class, 1, 10**6)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    model = as_classifier(model)
    dev = torch.device(device) if device is not None else model_device(model)
    dtype = model_dtype(model)
    twin = float64_twin(model) if cfg.float64_fallback else None
    N = N_CLASSES * n_per_class
    t0 = time.perf_counter()
    if start is None:
        n_noise = n_per_class if cfg.shared_noise else N
        start = noise_images(n_noise, cfg.noise_std, seed, cfg.clip, dtype)
        if cfg.shared_noise:  # noise s -> images 10 s .. 10 s + 9
            start = start.repeat_interleave(N_CLASSES, 0)
    elif tuple(start.shape) != (N, N_PIXELS):
        raise ValueError(f"start must have shape ({N}, {N_PIXELS}), got {tuple(start.shape)}")
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
    """Eq. (5) on C^alpha for one chunk ``x`` (B, 784), each image stopping on its own."""
    B, dev = x.shape[0], x.device
    v = x.clone()
    steps = torch.zeros(B, dtype=torch.long, device=dev)
    status = torch.zeros(B, dtype=torch.long, device=dev)
    stalled = torch.zeros(B, dtype=torch.bool, device=dev)
    logc_end = torch.zeros(B, dtype=torch.float64, device=dev)
    logc_start = torch.zeros(B, dtype=torch.float64, device=dev)
    stop = Stopper(v, m, cfg.tol, cfg.patience, cfg.min_progress, cfg.eps)
    count = Counters(B, dev)
    active = torch.arange(B, device=dev)
    for step in range(cfg.max_steps + 1):
        va = v[active]
        d = direction(model, twin, va, alpha[active], m, cfg.clip)
        count.add(active, d, step)
        logc = log_objective(d.D, alpha[active], m)  # (A,)
        if step == 0:
            logc_start[active] = logc.double()
        conv, plateau = stop.update(active, va, logc, step)
        done = conv | plateau | (step == cfg.max_steps)
        if done.any():
            idx = active[done]
            code = torch.where(conv[done], CONVERGED, torch.where(plateau[done], PLATEAU, MAX_STEPS))
            status[idx] = torch.where(d.flat[done], STALLED, code)
            stalled[idx] = d.flat[done]
            steps[idx] = step
            logc_end[idx] = logc[done].double()
        active, u = active[~done], d.u[~done]
        if active.numel() == 0:
            break
        v[active] = take_step(v[active], u, cfg.eps, cfg.clip)
    return {"images": v.cpu(), "steps": steps.cpu(), "status": status.cpu(), "stalled": stalled.cpu(),
            "log_objective": logc_end.cpu(), "start_log_objective": logc_start.cpu(), **count.out()}
