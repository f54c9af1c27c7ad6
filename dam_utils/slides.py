"""The talk slides (Krotov, "Dense Associative Memories and Deep Learning"; appendix A): their two update rules.

The associative-memory dynamics on spins ``sigma`` (N units, K stored patterns ``xi^mu``)::

    sigma_i(t+1) = Sign[ sum_mu F(xi_i^mu + h_i^mu) - F(-xi_i^mu + h_i^mu) ],  h_i^mu = sum_{j != i} xi_j^mu sigma_j(t)

(:func:`local_field`, :func:`recall`), and the classifier, the same rule for the class neurons ``x_alpha`` with the
pixels ``v_i`` clamped, written with ``c_alpha`` and ``g = tanh``::

    c_alpha = g[ beta sum_mu ( F(-xi_alpha^mu x_alpha + r_alpha^mu) - F(xi_alpha^mu x_alpha + r_alpha^mu) ) ],
    r_alpha^mu = sum_{gamma != alpha} xi_gamma^mu x_gamma + sum_i xi_i^mu v_i

(:func:`slides_classifier`). With every class neuron off (``x = -1``) this is the paper's eq. (1); appendix A shows
it numerically on the book models. ``F`` is the rectified polynomial ``F_n(z) = max(z, 0)^n`` of the classifier, or
the plain polynomial ``z^n`` of the 2016 paper's capacity analysis (:data:`ENERGIES`). ``beta = 1 / T^n`` is folded
into the argument, ``beta F_n(z) = F_n(z / T)``, as in :mod:`dam_utils.model`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .book_models import ChapterModels, obtain_models
from .data import Dataset, load_mnist
from .deform import DeformConfig
from .model import DAM
from .params import Preset, check_choice, check_float, check_int, int_field
from .results_cache import load_transfer_results, save_transfer_results
from .transfer import TransferResult, adversarial_transfer

__all__ = ["ENERGIES", "SLIDES_N", "SLIDES_TRANSFER", "RecallResult", "SlidesConfig", "capacity_table", "energy",
           "local_field", "recall", "slides_classifier", "slides_transfer", "spin_class_update"]

#: The slides' input-transfer table compares these two powers; its cache in ``artifacts/results/``.
SLIDES_N = (2, 8)
SLIDES_TRANSFER = "a1_slides_transfer"


def _rect(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda z: z.clamp(min=0) ** n


def _poly(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda z: z**n


#: The energy functions F: ``"rect"`` the classifier's rectified polynomial (eq. (2)), ``"poly"`` z^n (2016 paper).
ENERGIES: dict[str, Callable[[int], Callable[[torch.Tensor], torch.Tensor]]] = {"rect": _rect, "poly": _poly}


def slides_classifier(model: DAM, v: torch.Tensor, x: torch.Tensor | None = None,
                      batch_size: int = 250) -> torch.Tensor:
    """``c_alpha`` of the slides for pixels ``v`` (B, 784) and class-neuron states ``x`` (B, 10; default all -1,
    "off"), computed literally in float64 (both arguments built per class, the sum over gamma != alpha written
    out); (B, 10). Equals ``model(v)`` (eq. (1)) when ``x = -1``."""
    xi, xc = model.xi.double(), model.xc.double()  # (K, 784), (K, 10)
    F = _rect(model.n)
    out = []
    for s in range(0, len(v), batch_size):
        vb = v[s : s + batch_size].double()  # (b, 784)
        xb = -torch.ones(len(vb), xc.shape[1], dtype=torch.float64) if x is None else x[s : s + batch_size].double()
        xb = xb.to(vb.device)
        pix = vb @ xi.T  # (b, K): sum_i xi_i v_i
        own = xc.unsqueeze(0) * xb.unsqueeze(1)  # (b, K, 10): xi_alpha x_alpha
        others = (xb @ xc.T).unsqueeze(2) - own  # (b, K, 10): sum_{gamma != alpha} xi_gamma x_gamma
        base = pix.unsqueeze(2) + others
        D = (F((base - own) / model.T) - F((base + own) / model.T)).sum(1)  # (b, 10)
        out.append(torch.tanh(D))
    return torch.cat(out)


def local_field(patterns: torch.Tensor, sigma: torch.Tensor, i: int, F: Callable[[torch.Tensor], torch.Tensor]
                ) -> torch.Tensor:
    """The argument of the slides' Sign for unit ``i``: ``sum_mu F(xi_i + h) - F(-xi_i + h)`` with
    ``h = sum_{j != i} xi_j sigma_j``; ``patterns`` (K, N), ``sigma`` (B, N) -> (B,)."""
    h = sigma @ patterns.T - sigma[:, i : i + 1] * patterns[:, i]  # (B, K)
    return (F(h + patterns[:, i]) - F(h - patterns[:, i])).sum(1)


def spin_class_update(model: DAM, v: torch.Tensor) -> torch.Tensor:
    """One update of each class neuron by the spin rule (:func:`local_field` with the classifier's F and
    ``beta``) from the state pixels = ``v``, class neurons = -1; (B, 10) in {-1, +1}."""
    patterns = torch.cat([model.xi, model.xc], 1).double() / model.T  # beta folded in: F(z / T)
    sigma = torch.cat([v.double(), -torch.ones(len(v), model.xc.shape[1], dtype=torch.float64)], 1)
    F = _rect(model.n)
    N = model.xi.shape[1]
    return torch.stack([torch.sign(local_field(patterns, sigma, N + a, F)) for a in range(model.xc.shape[1])], 1)


def energy(patterns: torch.Tensor, sigma: torch.Tensor, F: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``E = -sum_mu F(xi^mu . sigma)``, (B,): the energy the spin rule never increases."""
    return -F(sigma @ patterns.T).sum(1)


@dataclass
class RecallResult:
    """``final`` (B, N) states after the asynchronous dynamics, ``sweeps`` taken, ``energies`` (sweeps + 1, B)."""

    final: torch.Tensor
    sweeps: int
    energies: torch.Tensor


def recall(patterns: torch.Tensor, probes: torch.Tensor, n: int, F: str = "poly", max_sweeps: int = 20,
           seed: int = 0) -> RecallResult:
    """Run the slides' dynamics asynchronously (one unit at a time, a random order per sweep) from ``probes``
    (B, N) in {-1, +1} until no unit changes in a sweep (or ``max_sweeps``). ``patterns`` (K, N) in {-1, +1}.
    The local fields are kept up to date incrementally (one rank-1 change per flip), so a sweep costs B K N."""
    check_choice("F", F, tuple(ENERGIES))
    n = check_int("n", n, 1, 100)
    max_sweeps = check_int("max_sweeps", max_sweeps, 1, 10**4)
    if patterns.ndim != 2 or probes.ndim != 2 or patterns.shape[1] != probes.shape[1]:
        raise ValueError(f"patterns (K, N) and probes (B, N) must share N: {tuple(patterns.shape)}, "
                         f"{tuple(probes.shape)}")
    f = ENERGIES[F](n)
    p = patterns.double()
    sigma = probes.double().clone()
    h = sigma @ p.T  # (B, K): xi^mu . sigma, kept current
    gen = torch.Generator().manual_seed(seed)
    energies = [-f(h).sum(1)]
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):  # noqa: B007  (the count is returned)
        changed = False
        for i in torch.randperm(p.shape[1], generator=gen).tolist():
            rest = h - sigma[:, i : i + 1] * p[:, i]  # (B, K): sum_{j != i}
            new = torch.sign((f(rest + p[:, i]) - f(rest - p[:, i])).sum(1))  # (B,)
            new = torch.where(new == 0, sigma[:, i], new)  # a tie keeps the unit as it is
            flip = new != sigma[:, i]
            if flip.any():
                changed = True
                h += (new - sigma[:, i]).unsqueeze(1) * p[:, i]
                sigma[:, i] = new
        energies.append(-f(h).sum(1))
        if not changed:
            break
    return RecallResult(sigma, sweeps, torch.stack(energies))


def capacity_table(N: int, K_values: Sequence[int], n_values: Sequence[int], flip: float = 0.1, n_probes: int = 20,
                   seed: int = 0, F: str = "poly") -> list[dict[str, float]]:
    """Pattern completion with random patterns (``<xi> = 0``, ``<xi xi> = delta``, the slides' assumption): for
    each n and K, store K random patterns of N units, flip a share ``flip`` of the units of ``n_probes`` of them,
    run :func:`recall`, and report the percent recovered exactly and the mean overlap with the stored pattern."""
    N = check_int("N", N, 2, 10**5)
    flip = check_float("flip", flip, 0.0, 0.5)
    rows = []
    rng = np.random.default_rng(seed)
    for n in n_values:
        for K in K_values:
            patterns = torch.from_numpy(rng.choice([-1.0, 1.0], size=(K, N)))
            which = rng.choice(K, size=min(n_probes, K), replace=False)
            probes = patterns[which].clone()
            for b in range(len(which)):
                units = rng.choice(N, size=round(flip * N), replace=False)
                probes[b, units] *= -1
            res = recall(patterns, probes, n, F, seed=seed)
            overlap = (res.final * patterns[which]).mean(1)  # (B,) 1 = the stored pattern
            rows.append({"n": n, "K": K, "K / N": K / N, "recovered (%)": 100.0 * float((overlap == 1).double().mean()),
                         "mean overlap": float(overlap.mean()), "sweeps": res.sweeps})
    return rows


# ---------------------------------------------------------------------------------------------------------
# The slides' input-transfer table (generate with n = 2 or 8, classify with both)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlidesConfig(Preset):
    """``n_images``: test images deformed by each model for the n = 2 / n = 8 table (all 10000 but in ``smoke``)."""

    n_images: int = int_field(10000, 1, 10000)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {}, "smoke": {"n_images": 20}}


def _table(models: ChapterModels, profile: str, data: Dataset, device: str | torch.device, progress: bool
           ) -> TransferResult:
    """Chapter 4's experiment (deform to one step behind the decision boundary, eq. (5); classify with both) on
    the models for n = 2 and 8."""
    cfg = SlidesConfig.preset(profile)
    res = adversarial_transfer(models.models, data, cfg.n_images, DeformConfig.preset(profile), m=models.loss_power,
                               device=device, progress=progress)
    res.config["slides"] = cfg.to_dict()
    return res


def slides_transfer(profile: str, recompute: bool, data: Dataset, device: str | torch.device = "cpu",
                    progress: bool = False) -> tuple[TransferResult, str]:
    """The n = 2 / n = 8 table of the slides on the committed book models, loaded from its cache (default; refused
    when stale), or computed here with models trained here (``recompute`` or ``smoke``; nothing is written)."""
    if not recompute and profile != "smoke":
        return load_transfer_results(name=SLIDES_TRANSFER), "loaded from artifacts/results/"
    models = obtain_models(SLIDES_N, profile, data, device=device, recompute=recompute)
    return _table(models, profile, data, device, progress), "computed in this notebook"


def main(argv: list[str] | None = None) -> None:
    """Recompute the cached n = 2 / n = 8 table from the committed models and store it with provenance."""
    ap = argparse.ArgumentParser(description="Appendix A: the talk slides' n = 2 / n = 8 input-transfer table.")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    data = load_mnist()
    res = _table(obtain_models(SLIDES_N, "cpu", data, device=args.device), "cpu", data, args.device, True)
    e = save_transfer_results(res, device=args.device, name=SLIDES_TRANSFER)
    print(f"{e['path']}: {res.n_images} images, {res.wall_time_s:.0f} s")


if __name__ == "__main__":
    main()
