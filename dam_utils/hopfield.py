"""The classical Hopfield associative memory of Musunuru et al. (seed 004, §I.B and §II.A.2; appendix C).

States are spins s in {-1, +1}^N (a binarised image: pixel > 0.5 -> +1). With P stored patterns xi^mu:

* eq. (1), the Hebbian rule: W_ij = (1/N) sum_mu xi_i^mu xi_j^mu (:func:`hebbian`; the diagonal, which eq. (1)
  leaves at P/N, is zeroed for the dynamics: it only shifts the energy by a constant);
* eq. (2), the energy: E(s) = -1/2 sum_ij W_ij s_i s_j (:func:`energy`);
* the iterative rule of §II.A.2, given only in words ("flipping states of the patterns randomly and checking the
  lowering of energy"), made concrete in :func:`iterative_rule`: start from the Hebbian W; at every iteration
  and for every pattern, draw neighbours with ``k`` random bits flipped (for k = 1 the bits in a random order
  without repetition, so that ``samples`` >= N checks every bit once); each neighbour that is not higher in
  energy than its pattern (by a margin ``kappa``) adds eta/N (xi xi^T - s s^T), which lowers the pattern's
  energy against that neighbour. For k = 1, E(s) - E(xi) = 2 xi_i h_i: the check is "bit i is unstable";
* two standard baselines the document does not use: :func:`storkey` and :func:`pseudo_inverse`;
* asynchronous recall (:func:`recall`): units in random order, s_i <- sign(h_i), kept on ties, until a sweep
  changes nothing; a recalled state gets the label of the stored pattern it overlaps most (:func:`label_of`);
* the health of the stored patterns (:func:`pattern_health`: fixed points, strict local minima, one-flip
  neighbour energies) and their basins (:func:`basin_sizes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .params import Preset, check_float, check_int, float_field, int_field

__all__ = ["IterativeConfig", "basin_sizes", "binarise", "energy", "exact_units", "hebbian", "iterative_rule",
           "label_of", "pattern_health", "pseudo_inverse", "recall", "sphere_landscape", "storkey", "transform_memory"]


def binarise(x01: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Images (B, N) in [0, 1] -> spins (B, N) in {-1, +1} (float64): +1 where the pixel exceeds ``threshold``."""
    threshold = check_float("threshold", threshold, 0.0, 1.0)
    return torch.where(x01.double() > threshold, 1.0, -1.0)


def _check_spins(s: torch.Tensor, name: str) -> None:
    if s.ndim != 2 or not bool(((s == 1) | (s == -1)).all()):
        raise ValueError(f"{name} must be a (B, N) tensor of +1 / -1 spins")


def hebbian(xi: torch.Tensor, zero_diagonal: bool = True) -> torch.Tensor:
    """Eq. (1): W = xi^T xi / N for patterns ``xi`` (P, N) of +1 / -1; (N, N), float64."""
    _check_spins(xi, "xi")
    xi = xi.double()
    w = xi.T @ xi  # (N, N) integers: exact
    if zero_diagonal:
        w.fill_diagonal_(0.0)
    return w / xi.shape[1]


def exact_units(w: torch.Tensor) -> torch.Tensor:
    """``N W`` when it is integer-valued (the Hebbian memory, and the iterative one with an integer ``eta``), else
    ``W``. The dynamics read only signs and ties of ``h = W s`` and of ``xi_i h_i``; in units of 1/N those are
    sums of integers, exact in float64 in any order, so every tie is a tie on every machine. In units of 1 a sum
    of multiples of 1/784 is rounded, and the rounding depends on the order a BLAS library adds in: a true tie
    (``h_i = 0``, the unit keeps its state) can become +-1e-16 and flip a unit on one CPU and not on another.
    Storkey's and the pseudo-inverse's weights are not such multiples and are returned as they are (the same
    object, so ``exact_units(w) is w`` says which case it was)."""
    scaled = w.double() * w.shape[-1]
    units = scaled.round()
    close = (scaled - units).abs().max() <= 1e-9 * max(1.0, float(units.abs().max()))
    return units if bool(close) else w


def energy(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. (2): E(s) = -1/2 s^T W s for states ``s`` (B, N) -> (B,). Summed in the exact units of
    :func:`exact_units` where W has them (then divided by N once), so the value is the same on every machine."""
    u = exact_units(w)
    scale = w.shape[-1] if u is not w else 1
    s = s.to(u.dtype)
    return (-0.5 * ((s @ u) * s).sum(1) / scale).to(w.dtype)


@dataclass(frozen=True)
class IterativeConfig(Preset):
    """The concrete iterative rule (module doc): ``flips`` bits per neighbour, ``samples`` neighbours per pattern
    per iteration, correction ``eta`` / N, margin ``kappa`` (a neighbour within ``kappa`` above its pattern also
    counts as a violation), at most ``max_iter`` iterations (stops earlier at an iteration with no violation)."""

    flips: int = int_field(1, 1, 784)
    samples: int = int_field(784, 1, 100000)
    eta: float = float_field(1.0, 0.0, 100.0, lo_inclusive=False)
    kappa: float = float_field(0.0, 0.0, 1e6)
    max_iter: int = int_field(200, 1, 100000)
    seed: int = int_field(0, 0, 2**31 - 1)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {}, "smoke": {"samples": 50, "max_iter": 5}}


def _neighbours(m: int, n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """The bits to flip for ``m`` neighbours (M, k): ``k`` distinct bits each; for k = 1 the bits run through
    random permutations of all ``n``, so ``m >= n`` neighbours check every bit once."""
    if k == 1:
        return torch.rand(-(-m // n), n, generator=gen).argsort(1).reshape(-1)[:m, None]
    return torch.rand(m, n, generator=gen).topk(k, 1).indices


def iterative_rule(xi: torch.Tensor, cfg: IterativeConfig, keep: tuple[int, ...] = ()
                   ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Train W from the Hebbian start with the flip-and-check rule (module doc). At each iteration, for each
    pattern in turn, its ``samples`` neighbours are drawn and checked against the current W, and the corrections
    of the violating ones are added together. Returns W (N, N) and one record per iteration (violations found;
    a copy of W before the iteration when its number is in ``keep``, 0 = the Hebbian start)."""
    _check_spins(xi, "xi")
    xi = xi.double()
    p, n = xi.shape
    gen = torch.Generator().manual_seed(cfg.seed)
    u = (xi.T @ xi).fill_diagonal_(0.0)  # the Hebbian W in units of 1/N (integers, see exact_units): exact checks
    history: list[dict[str, Any]] = []
    for it in range(cfg.max_iter):
        rec: dict[str, Any] = {"iteration": it, "violations": 0}
        if it in keep:
            rec["w"] = u / n
        for mu in range(p):
            x = xi[mu]
            idx = _neighbours(cfg.samples, n, cfg.flips, gen)  # (M, k)
            # s = x with the bits F flipped: E(s) - E(x) = 2 sum_{i in F} x_i h_i - 2 sum_{i, j in F} x_i W_ij x_j
            xf = x[idx]  # (M, k)
            rise = 2 * (xf * (u @ x)[idx]).sum(1) - 2 * (xf[:, :, None] * u[idx[:, :, None], idx[:, None, :]]
                                                          * xf[:, None, :]).sum((1, 2))  # N (E(s) - E(x))
            bad = rise <= cfg.kappa * n  # (M,) neighbours not higher than the pattern
            if bad.any():
                sb = x.repeat(int(bad.sum()), 1)
                sb.scatter_(1, idx[bad], -xf[bad])
                u += cfg.eta * (int(bad.sum()) * torch.outer(xi[mu], xi[mu]) - sb.T @ sb)
                u.fill_diagonal_(0.0)
                rec["violations"] += int(bad.sum())
        history.append(rec)
        if rec["violations"] == 0:
            break
    return u / n, history


def storkey(xi: torch.Tensor) -> torch.Tensor:
    """Storkey's rule (a baseline, not in the document): patterns learned one at a time,
    dW_ij = (1/N)(xi_i xi_j - xi_i h_ji - h_ij xi_j), h_ij = sum_{k != i, j} W_ik xi_k; zero diagonal."""
    _check_spins(xi, "xi")
    xi = xi.double()
    n = xi.shape[1]
    w = torch.zeros(n, n, dtype=torch.float64)
    for x in xi:
        h = w @ x  # (N,) sum over all k
        # h_ij = h_i - W_ii x_i - W_ij x_j (W_ii = 0)
        hij = h[:, None] - w * x[None, :]  # (N, N)
        w = w + (torch.outer(x, x) - x[:, None] * hij.T - hij * x[None, :]) / n
        w.fill_diagonal_(0.0)
    return w


def pseudo_inverse(xi: torch.Tensor) -> torch.Tensor:
    """The projection rule (a baseline): W = Xi (Xi^T Xi)^+ Xi^T with Xi = xi^T (N, P); every stored pattern is
    a fixed point whenever the patterns are linearly independent. Diagonal zeroed."""
    _check_spins(xi, "xi")
    x = xi.double().T  # (N, P)
    w = x @ torch.linalg.pinv(x.T @ x) @ x.T
    return w.fill_diagonal_(0.0)


def recall(w: torch.Tensor, s0: torch.Tensor, max_sweeps: int = 100, seed: int = 0,
           relabel: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Asynchronous recall from states ``s0`` (B, N): each sweep visits the units in a random order (the same for
    the batch), s_i <- sign(h_i) with h = W s, keeping s_i when h_i = 0. ``relabel`` (N,) maps the units of
    that order to other labels: a memory whose units were permuted (W[p][:, p]) visits ``argsort(p)[order]``, the
    same units as the original in the same order. Returns the final states (B, N) and the number of sweeps each
    state needed until a sweep changed nothing (``max_sweeps`` + 1 if it never settled)."""
    _check_spins(s0, "s0")
    max_sweeps = check_int("max_sweeps", max_sweeps, 1, 100000)
    wn = exact_units(w.detach().cpu()).double().numpy()  # sign(h) is all recall reads: units of 1/N keep ties exact
    s = s0.detach().cpu().to(torch.float64).numpy().copy()  # (B, N)
    h = s @ wn  # (B, N); W symmetric
    gen = torch.Generator().manual_seed(seed)
    sweeps = np.full(len(s), max_sweeps + 1, dtype=np.int64)
    live = np.arange(len(s))  # states still changing: only these are updated (numpy: less overhead per unit)
    for sweep in range(1, max_sweeps + 1):
        order = torch.randperm(s.shape[1], generator=gen)
        ls, lh = s[live], h[live]
        changed = np.zeros(len(live), dtype=bool)
        for i in (order if relabel is None else relabel[order]).tolist():
            hi, si = lh[:, i], ls[:, i]
            flip = ((hi > 0) & (si < 0)) | ((hi < 0) & (si > 0))  # sign(h_i) differs; a tie keeps s_i
            if flip.any():
                r = np.flatnonzero(flip)
                ls[r, i] = -ls[r, i]
                lh[r] += (2 * ls[r, i])[:, None] * wn[i][None, :]  # h += (new - old) W_i
                changed |= flip
        s[live], h[live] = ls, lh
        sweeps[live[~changed]] = sweep
        live = live[changed]
        if not len(live):
            break
    return torch.from_numpy(s), torch.from_numpy(sweeps)


def label_of(s: torch.Tensor, xi: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The label of the stored pattern with the largest overlap xi^mu . s / N, for states ``s`` (B, N)."""
    return labels[(s.double() @ xi.double().T).argmax(1)]


def pattern_health(w: torch.Tensor, xi: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per stored pattern (P,): ``energy`` (eq. 2), ``fixed`` (no unit would flip: xi_i h_i >= 0 for every i, a
    tie keeps the unit), ``strict_min`` (every one-flip neighbour is higher: xi_i h_i > 0 for every i),
    ``unstable`` (bits with xi_i h_i <= 0), and the minimum and mean energy of the N one-flip neighbours
    (E(xi with bit i flipped) = E(xi) + 2 xi_i h_i with a zero diagonal)."""
    u = exact_units(w)  # sums in units of 1/N where W has them: every tie and every value the same on any machine
    xi = xi.to(u.dtype)
    stab_u = xi * (xi @ u)  # (P, N): xi_i h_i, in those units
    stab = (stab_u / w.shape[-1] if u is not w else stab_u).to(w.dtype)
    e = energy(w, xi)
    diag = torch.diagonal(w)
    neigh = e[:, None] + 2 * stab - 2 * diag[None, :]  # exact for any diagonal
    return {"energy": e, "fixed": (stab_u >= 0).all(1), "strict_min": (stab_u > 0).all(1),
            "unstable": (stab_u <= 0).sum(1), "neighbour_min": neigh.min(1).values, "neighbour_mean": neigh.mean(1)}


def basin_sizes(w: torch.Tensor, xi: torch.Tensor, max_flips: int = 300, step: int = 10, trials: int = 10,
                seed: int = 0) -> torch.Tensor:
    """Per stored pattern (P,): the largest number of flipped bits k (on a grid of ``step``, up to ``max_flips``)
    such that asynchronous recall returns the pattern exactly from every one of ``trials`` random draws with
    k' <= k bits flipped; 0 when even the pattern itself is not a fixed point. Each draw flips the first k bits
    of one random order of the bits, so its levels are nested; all levels are recalled in one batch."""
    xi = xi.to(w.dtype)
    gen = torch.Generator().manual_seed(seed)
    levels = torch.arange(step, max_flips + 1, step)  # (L,)
    out = torch.zeros(len(xi), dtype=torch.long)
    fixed = pattern_health(w, xi)["fixed"].nonzero().squeeze(1)
    if not len(fixed) or not len(levels):
        return out
    a, n = len(fixed), xi.shape[1]
    rank = torch.rand(a, trials, n, generator=gen).argsort(2).argsort(2)  # (A, T, N): each bit's place in its order
    flip = rank[:, None] < levels[None, :, None, None]  # (A, L, T, N): the first k bits of the order
    start = xi[fixed][:, None, None, :].expand(-1, len(levels), trials, -1)
    back, _ = recall(w, torch.where(flip, -start, start).reshape(-1, n), seed=seed)
    ok = (back.reshape(a, len(levels), trials, n) == start).all(3).all(2)  # (A, L)
    lead = torch.cumprod(ok.long(), 1).sum(1)  # levels passed before the first failure
    out[fixed] = torch.where(lead > 0, levels[(lead - 1).clamp_min(0)], 0)
    return out


def sphere_landscape(w: torch.Tensor, basis: torch.Tensor, n_theta: int = 90, n_phi: int = 180
                     ) -> dict[str, torch.Tensor]:
    """The document's "visualization of the energy landscape [...] plotted on hypersphere" (Figs. 2, 4, 5) made
    concrete: an orthonormal frame U (N, 3) from three states ``basis`` (3, N) by Gram-Schmidt (QR), directions
    u(theta, phi) on the unit sphere, and the energy (eq. 2) of the state sign(U u) in each direction. Returns
    ``theta`` (T,), ``phi`` (F,), ``energy`` (T, F), and ``coords`` (3, 3): the basis states' directions in
    the frame, to mark them."""
    u, r = torch.linalg.qr(basis.double().T)  # (N, 3), (3, 3): basis^T = U r
    theta = torch.linspace(0, torch.pi, n_theta, dtype=torch.float64)
    phi = torch.linspace(0, 2 * torch.pi, n_phi, dtype=torch.float64)
    t, f = torch.meshgrid(theta, phi, indexing="ij")
    dirs = torch.stack([t.sin() * f.cos(), t.sin() * f.sin(), t.cos()], -1).reshape(-1, 3)  # (T*F, 3)
    s = torch.sign(dirs @ u.T)
    s[s == 0] = 1.0
    e = energy(w.double(), s).reshape(n_theta, n_phi)
    return {"theta": theta, "phi": phi, "energy": e, "coords": r.T / r.T.norm(dim=1, keepdim=True)}


def transform_memory(w: torch.Tensor, perm: torch.Tensor | None = None, signs: torch.Tensor | None = None,
                     one_sided: bool = False) -> torch.Tensor:
    """A dense network's equioutput transformations applied to a Hopfield matrix (§II.C.2): the neuron
    permutation P W P^T, the sign flips D W D, or (``one_sided``) the dense-layer-style P W, which breaks the
    symmetry of W. P W P^T stores the permuted patterns P xi and D W D the flipped patterns D xi."""
    m = w.clone()
    if perm is not None:
        m = m[perm] if one_sided else m[perm][:, perm]
    if signs is not None:
        d = signs.to(w.dtype)
        m = d[:, None] * m * d[None, :]
    return m
