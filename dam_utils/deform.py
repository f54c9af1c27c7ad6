"""Decision-boundary deformations, Krotov & Hopfield (2018) section 4 (Fig. 4; the adversarial images of
Fig. 5): a clean image follows ``-grad C^second`` (eq. (5) on the objective of eq. (4) for its second
choice) until the model's label changes; the crossing is refined by bisection.

* :func:`deform` runs the descent (:mod:`dam_utils.descent`) and returns a :class:`DeformResult`: the
  boundary image (``D_top = D_second``), the first image behind it, and optionally the final image where
  ``C^second`` converged; a :class:`DeformTrace` records ``log C^top``, ``log C^second`` per step (Fig. 4,
  top panel) and image snapshots for the animation.
* :func:`refine_boundary` is the bisection on the last step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .descent import (
    AT_CROSSING,
    CONVERGED,
    MAX_STEPS,
    PLATEAU,
    Counters,
    Stopper,
    diagnostics,
    direction,
    energy,
    take_step,
)
from .model import N_PIXELS
from .objectives import Classifier, as_classifier, float64_twin, log_objective, log_objective_of
from .params import ParameterError, Preset, bool_field, check_int, float_field, int_field

__all__ = ["DeformConfig", "DeformResult", "DeformTrace", "deform", "refine_boundary"]


@dataclass(frozen=True)
class DeformConfig(Preset):
    """Decision-boundary deformations, section 4: follow ``-grad C^second`` from a clean image.

    * ``eps = 0.1``: step of eq. (5) in L2 pixel units (the median test digit has norm ~ 27). The paper needs it only
      "sufficiently small" to resolve the crossing; the crossing image is then refined by bisection on the
      last step, so ``eps`` only sets how far past the boundary the *behind* image lies (at most ``eps``)
      and the cost (steps ~ boundary distance / eps). Whether the boundary depends on ``eps`` is measured,
      not assumed: :func:`dam_utils.sensitivity.step_size_sensitivity` (chapter 3).
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

    eps: float = float_field(0.1, 0.0, None, lo_inclusive=False)
    max_steps: int = int_field(3000, 1, 10**7)
    clip: bool = bool_field(True)
    to_convergence: bool = bool_field(True)
    tol: float = float_field(0.01, 0.0, 1.0, lo_inclusive=False)
    patience: int = int_field(100, 1, 10**7)
    min_progress: float = float_field(1e-3, 0.0, None)
    bisect_steps: int = int_field(40, 0, 200)
    boundary_rtol: float = float_field(1e-4, 0.0, 1.0)
    boundary_atol: float = float_field(1e-5, 0.0, None)
    float64_fallback: bool = bool_field(True)
    batch_size: int = int_field(2000, 1, 10**6)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "cpu": {"max_steps": 1500},
        "smoke": {"max_steps": 40, "patience": 10, "batch_size": 100},
    }



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
            **diagnostics(self.vanishing, self.underflow, self.zero_gradient),
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
            snaps = torch.full((len(self.snap), len(snap_steps), N_PIXELS), math.nan, dtype=dtype)
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
    if x.ndim != 2 or x.shape[1] != N_PIXELS:
        raise ValueError(f"x must have shape (N, {N_PIXELS}), got {tuple(x.shape)}")
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
    top, second = energy(model, x).topk(2, dim=1).indices.unbind(1)  # (B,), (B,)
    v = x.detach().clone()
    before = v.clone()  # last iterate with D_top >= D_second, for the bisection
    behind = v.clone()
    crossed = torch.zeros(B, dtype=torch.bool, device=dev)
    cross_step = torch.full((B,), -1, dtype=torch.long, device=dev)
    steps = torch.zeros(B, dtype=torch.long, device=dev)
    status = torch.zeros(B, dtype=torch.long, device=dev)
    logc_end = torch.zeros(B, dtype=torch.float64, device=dev)
    stop = Stopper(v, m, cfg.tol, cfg.patience, cfg.min_progress, cfg.eps)
    count = Counters(B, dev)
    active = torch.arange(B, device=dev)
    for step in range(cfg.max_steps + 1):
        va, sa = v[active], second[active]
        d = direction(model, twin, va, sa, m, cfg.clip)
        count.add(active, d, step)
        rec.record(step, active, va, d.D, top[active], sa, m)
        logc = log_objective_of(model, d.D, sa, m)  # (A,) log C^second (the model's own objective)
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
        v[active] = take_step(v[active], u, cfg.eps, cfg.clip)

    boundary = behind.clone()
    gap_b = torch.full((B,), math.nan, dtype=x.dtype, device=dev)
    scale_b = torch.full((B,), math.nan, dtype=x.dtype, device=dev)
    ci = torch.nonzero(crossed).squeeze(1)
    if ci.numel():
        b, gb, sb = refine_boundary(model, before[ci], behind[ci], top[ci], second[ci], cfg.bisect_steps,
                                    cfg.boundary_rtol, cfg.boundary_atol)
        boundary[ci], gap_b[ci], scale_b[ci] = b, gb, sb
    behind_pred = energy(model, behind).argmax(1)
    return {
        "top": top.cpu(), "second": second.cpu(), "boundary": boundary.cpu(), "behind": behind.cpu(),
        "final": v.cpu() if cfg.to_convergence else None, "boundary_gap": gap_b.cpu(),
        "boundary_scale": scale_b.cpu(), "behind_pred": behind_pred.cpu(), "crossed": crossed.cpu(),
        "cross_step": cross_step.cpu(), "steps": steps.cpu(), "status": status.cpu(),
        "final_log_objective": logc_end.cpu(), **count.out(),
    }
