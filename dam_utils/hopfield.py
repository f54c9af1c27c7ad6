"""The classical Hopfield associative memory of Musunuru et al. (seed 004, §I.B and §II.A.2; appendix C).

States are spins s in {-1, +1}^N (a binarised image: pixel > 0.5 -> +1). With P stored patterns xi^mu:

* eq. (1), the Hebbian rule: W_ij = (1/N) sum_mu xi_i^mu xi_j^mu (:func:`hebbian`; the diagonal, which eq. (1)
  leaves at P/N, is zeroed for the dynamics: it only shifts the energy by a constant);
* eq. (2), the energy: E(s) = -1/2 sum_ij W_ij s_i s_j (:func:`energy`);
* the iterative rule of §II.A.2, given only in words ("flipping states of the patterns randomly and checking the
  lowering of energy"), made concrete in :func:`iterative_rule`: start from the Hebbian W; at every iteration
  and for every pattern, draw neighbours with ``k`` random bits flipped; each neighbour that is not higher in
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

import torch

from .params import Preset, check_float, check_int, float_field, int_field

__all__ = ["IterativeConfig", "basin_sizes", "binarise", "energy", "hebbian", "iterative_rule", "label_of",
           "pattern_health", "pseudo_inverse", "recall", "storkey", "transform_memory"]


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
    w = xi.T @ xi / xi.shape[1]
    if zero_diagonal:
        w.fill_diagonal_(0.0)
    return w


def energy(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. (2): E(s) = -1/2 s^T W s for states ``s`` (B, N) -> (B,)."""
    s = s.to(w.dtype)
    return -0.5 * ((s @ w) * s).sum(1)


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
    w = hebbian(xi)
    history: list[dict[str, Any]] = []
    for it in range(cfg.max_iter):
        rec: dict[str, Any] = {"iteration": it, "violations": 0}
        if it in keep:
            rec["w"] = w.clone()
        for mu in range(p):
            s = xi[mu].repeat(cfg.samples, 1)  # (M, N) copies of the pattern
            idx = torch.rand(cfg.samples, n, generator=gen).argsort(1)[:, : cfg.flips]  # k distinct bits each
            s.scatter_(1, idx, -s.gather(1, idx))
            bad = energy(w, s) <= energy(w, xi[mu : mu + 1]) + cfg.kappa  # (M,) not higher than the pattern
            if bad.any():
                sb = s[bad]
                w += cfg.eta / n * (int(bad.sum()) * torch.outer(xi[mu], xi[mu]) - sb.T @ sb)
                w.fill_diagonal_(0.0)
                rec["violations"] += int(bad.sum())
        history.append(rec)
        if rec["violations"] == 0:
            break
    return w, history


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


def recall(w: torch.Tensor, s0: torch.Tensor, max_sweeps: int = 100, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Asynchronous recall from states ``s0`` (B, N): each sweep visits the units in a random order (the same for
    the batch), s_i <- sign(h_i) with h = W s, keeping s_i when h_i = 0. Returns the final states (B, N) and the
    number of sweeps each state needed until a sweep changed nothing (``max_sweeps`` + 1 if it never settled)."""
    _check_spins(s0, "s0")
    max_sweeps = check_int("max_sweeps", max_sweeps, 1, 100000)
    s = s0.to(w.dtype).clone()
    h = s @ w  # (B, N); W symmetric
    gen = torch.Generator().manual_seed(seed)
    sweeps = torch.full((len(s),), max_sweeps + 1, dtype=torch.long)
    active = torch.ones(len(s), dtype=torch.bool)
    for sweep in range(1, max_sweeps + 1):
        changed = torch.zeros(len(s), dtype=torch.bool)
        for i in torch.randperm(s.shape[1], generator=gen).tolist():
            new = torch.where(h[:, i] > 0, 1.0, torch.where(h[:, i] < 0, -1.0, s[:, i]))
            flip = (new != s[:, i]) & active
            if flip.any():
                rows = flip.nonzero().squeeze(1)
                delta = new[rows] - s[rows, i]  # +-2
                s[rows, i] = new[rows]
                h[rows] += delta[:, None] * w[i][None, :]
                changed |= flip
        done = active & ~changed
        sweeps[done] = sweep
        active &= changed
        if not active.any():
            break
    return s, sweeps


def label_of(s: torch.Tensor, xi: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The label of the stored pattern with the largest overlap xi^mu . s / N, for states ``s`` (B, N)."""
    return labels[(s.double() @ xi.double().T).argmax(1)]


def pattern_health(w: torch.Tensor, xi: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per stored pattern (P,): ``energy`` (eq. 2), ``fixed`` (no unit would flip: xi_i h_i >= 0 for every i, a
    tie keeps the unit), ``strict_min`` (every one-flip neighbour is higher: xi_i h_i > 0 for every i),
    ``unstable`` (bits with xi_i h_i <= 0), and the minimum and mean energy of the N one-flip neighbours
    (E(xi with bit i flipped) = E(xi) + 2 xi_i h_i with a zero diagonal)."""
    xi = xi.to(w.dtype)
    stab = xi * (xi @ w)  # (P, N): xi_i h_i
    e = energy(w, xi)
    diag = torch.diagonal(w)
    neigh = e[:, None] + 2 * stab - 2 * diag[None, :]  # exact for any diagonal
    return {"energy": e, "fixed": (stab >= 0).all(1), "strict_min": (stab > 0).all(1),
            "unstable": (stab <= 0).sum(1), "neighbour_min": neigh.min(1).values, "neighbour_mean": neigh.mean(1)}


def basin_sizes(w: torch.Tensor, xi: torch.Tensor, max_flips: int = 300, step: int = 10, trials: int = 10,
                seed: int = 0) -> torch.Tensor:
    """Per stored pattern (P,): the largest number of flipped bits (on a grid of ``step``, up to ``max_flips``)
    from which asynchronous recall returns the pattern exactly in every one of ``trials`` random draws; 0 when
    even the pattern itself is not a fixed point."""
    xi = xi.to(w.dtype)
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(xi), dtype=torch.long)
    alive = pattern_health(w, xi)["fixed"].clone()
    for k in range(step, max_flips + 1, step):
        if not alive.any():
            break
        s = xi[alive].repeat_interleave(trials, 0)  # (A * trials, N)
        idx = torch.rand(len(s), xi.shape[1], generator=gen).argsort(1)[:, :k]
        s.scatter_(1, idx, -s.gather(1, idx))
        back, _ = recall(w, s, seed=int(torch.randint(2**31 - 1, (1,), generator=gen)))
        ok = (back == xi[alive].repeat_interleave(trials, 0)).all(1).reshape(-1, trials).all(1)
        which = alive.nonzero().squeeze(1)
        out[which[ok]] = k
        alive[which[~ok]] = False
    return out


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
