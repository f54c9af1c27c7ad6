"""Chapter 7's attacks: code that nobody in this book wrote, called through one function.

Every attack comes from a library: AutoAttack (``pyautoattack==0.2.0``: APGD-CE, APGD-DLR, APGD-T, FAB, FAB-T,
Square; Croce & Hein 2020) or foolbox (``foolbox==3.3.4``: FGSM/FGM, PGD, DeepFool, HopSkipJump; Rauber et
al. 2017/2020). :func:`run_attack` calls one of them on an :class:`~dam_utils.audit_model.AttackView` and then
checks, with our own code, what the library returned (:func:`checked_run`):

* every adversarial image lies in the box [0, 1] and, for a bounded attack, inside the eps-ball of its image
  (a violation raises :class:`AttackInvariantError`: an attack that cheats is a bug, never a result);
* "fooled" is the model's own label of the returned image, never the library's claim of success;
* a clean image the model already gets wrong counts as fooled at distance 0 (robust accuracy <= clean accuracy).

AutoAttack reports its checks (zero gradients, a randomised or dynamic model, Square stronger than the rest)
as log records of the ``auto-attack`` logger; foolbox and torch use :mod:`warnings`. Both are captured and
returned with the run (:attr:`AttackRun.warnings`), never silenced.

Norms and eps are in the [0, 1] pixel units of the attack literature: a step of eps here is 2 eps in the
book's [-1, 1] units (chapter 3's boundary distances are converted before they are compared).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .audit_model import AttackView

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # foolbox imports GitPython, which wants a git binary
import foolbox as fb
from pyautoattack import AutoAttack
from pyautoattack.fab_pt import FABAttack_PT

__all__ = ["BOUNDED", "MINIMAL", "NORMS", "STANDARD", "AttackBudget", "AttackInvariantError", "AttackRun",
           "autoattack_standard", "checked_run", "distances", "run_attack"]

NORMS = ("Linf", "L2")
#: AutoAttack's "standard" version, in its order (each runs on the images the previous ones left robust).
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
#: Attacks with an eps-ball (``run_attack(..., eps=...)``): robust accuracy at eps.
BOUNDED = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "apgd-ce-long", "apgd-dlr-long")
#: The attacks taken from foolbox (the others come from AutoAttack).
FOOLBOX = ("fgsm", "pgd", "deepfool", "hsj")
#: Minimal-distance attacks (L2; ``eps`` is ignored): per-image distance to the nearest adversarial found.
MINIMAL = ("deepfool", "fab", "hsj")
_AA_LOGGER = "auto-attack"
_BOX_TOL = 1e-6


class AttackInvariantError(AssertionError):
    """A library returned an image outside the box or outside the eps-ball."""


@dataclass(frozen=True)
class AttackBudget:
    """Iterations and queries of each attack. AutoAttack's standard settings: APGD 100 iterations, 1 restart,
    9 target classes; FAB-T 100 iterations; Square 5000 queries. ``*_long``: the "more iterations and restarts"
    check of the checklist."""

    pgd_steps: int = 40
    apgd_iter: int = 100
    long_iter: int = 300
    long_restarts: int = 3
    fab_iter: int = 100
    square_queries: int = 5000
    deepfool_steps: int = 50
    hsj_steps: int = 40
    batch_size: int = 250


@dataclass
class AttackRun:
    """One attack on one model. ``adv`` (B, 1, 28, 28) in [0, 1]; ``fooled`` (B,) the model's label of ``adv``
    differs from the truth; ``distance`` (B,) ``||adv - x||`` in the attack's norm (0 for clean errors, inf
    where a minimal attack found nothing); ``warnings``: every captured message with its count."""

    name: str
    norm: str
    eps: float | None
    adv: torch.Tensor
    fooled: torch.Tensor
    distance: torch.Tensor
    wall_s: float
    warnings: dict[str, int] = field(default_factory=dict)

    def robust_accuracy(self) -> float:
        """Percent of images still classified correctly."""
        return 100.0 * float((~self.fooled).float().mean())


def distances(x: torch.Tensor, adv: torch.Tensor, norm: str) -> torch.Tensor:
    """``||adv - x||`` per image in ``norm`` ("Linf" or "L2"), (B,)."""
    d = (adv - x).reshape(len(x), -1).double()
    return (d.abs().amax(1) if norm == "Linf" else d.norm(dim=1)).float()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages[f"auto-attack: {record.getMessage()}"] += 1


@contextmanager
def captured() -> Iterator[Counter[str]]:
    """Collect AutoAttack's log warnings and every Python warning raised inside the block."""
    log = logging.getLogger(_AA_LOGGER)
    handler = _Records()
    log.addHandler(handler)
    old_level, old_propagate = log.level, log.propagate
    log.setLevel(logging.WARNING)
    log.propagate = False  # recorded here and shown by the chapter, not printed twice
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield handler.messages
        for w in caught:
            handler.messages[f"{w.category.__name__}: {w.message}"] += 1
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


def _label(view: AttackView, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([view(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def checked_run(name: str, view: AttackView, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, norm: str,
                eps: float | None, wall_s: float, messages: Counter[str], batch_size: int = 250) -> AttackRun:
    """Verify what a library returned (module docstring) and score it with the model's own labels."""
    adv = adv.detach().to(x.dtype).reshape(x.shape)
    if not bool(torch.isfinite(adv).all()):
        raise AttackInvariantError(f"{name}: non-finite pixels in the adversarial images")
    lo, hi = float(adv.min()), float(adv.max())
    if lo < -_BOX_TOL or hi > 1 + _BOX_TOL:
        raise AttackInvariantError(f"{name}: pixels outside [0, 1] (min {lo:.3g}, max {hi:.3g})")
    adv = adv.clamp(0.0, 1.0)
    clean_wrong = _label(view, x, batch_size).cpu() != y.cpu()
    adv = torch.where(clean_wrong.to(adv.device)[:, None, None, None], x, adv)  # clean errors: distance 0
    dist = distances(x, adv, norm).cpu()
    if eps is not None and float(dist.max()) > eps * (1 + 1e-4) + 1e-6:
        raise AttackInvariantError(f"{name}: a perturbation of {float(dist.max()):.5g} > eps = {eps} ({norm})")
    fooled = (_label(view, adv, batch_size).cpu() != y.cpu()) | clean_wrong
    if eps is None:
        dist = torch.where(fooled, dist, torch.full_like(dist, math.inf))
    return AttackRun(name, norm, eps, adv.cpu(), fooled, dist, wall_s, dict(messages))


def _autoattack(view: AttackView, norm: str, eps: float, budget: AttackBudget, seed: int) -> AutoAttack:
    aa = AutoAttack(view, norm=norm, eps=eps, version="standard", seed=seed, device=_device(view))
    aa.apgd.n_iter = aa.apgd_targeted.n_iter = budget.apgd_iter
    aa.fab.n_iter = budget.fab_iter
    aa.square.n_queries = budget.square_queries
    return aa


def _device(view: AttackView) -> torch.device:
    return view.model.device  # DAM and PolyNet both expose it


def _foolbox(name: str, norm: str, budget: AttackBudget) -> fb.attacks.Attack:
    linf = norm == "Linf"
    if name == "fgsm":
        return fb.attacks.FGSM() if linf else fb.attacks.FGM()
    if name == "pgd":
        return fb.attacks.LinfPGD(steps=budget.pgd_steps) if linf else fb.attacks.L2PGD(steps=budget.pgd_steps)
    if name == "deepfool":
        return fb.attacks.L2DeepFoolAttack(steps=budget.deepfool_steps)
    if name == "hsj":
        return fb.attacks.HopSkipJumpAttack(steps=budget.hsj_steps, constraint="l2")
    raise ValueError(f"no foolbox attack {name!r}")


def run_attack(name: str, view: AttackView, x: torch.Tensor, y: torch.Tensor, norm: str = "Linf",
               eps: float | None = None, budget: AttackBudget | None = None, seed: int = 0) -> AttackRun:
    """Attack ``view`` on images ``x`` (B, 1, 28, 28) in [0, 1] with labels ``y`` (B,).

    ``name``: one of :data:`BOUNDED` (needs ``eps``, robust accuracy at eps) or :data:`MINIMAL` (L2 only,
    nearest adversarial found). ``apgd-*-long``: APGD with ``long_iter`` iterations and ``long_restarts``
    restarts. Randomness is seeded with ``seed``; the images are attacked in batches of ``budget.batch_size``."""
    budget = budget or AttackBudget()
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if name not in BOUNDED + MINIMAL:
        raise ValueError(f"unknown attack {name!r}; choose from {BOUNDED + MINIMAL}")
    if name in MINIMAL and norm != "L2":
        raise ValueError(f"{name} is run as a minimal L2 attack; norm must be 'L2'")
    if name in BOUNDED and (eps is None or not eps > 0):
        raise ValueError(f"{name} needs eps > 0, got {eps!r}")
    dev = _device(view)
    x, y = x.to(dev), y.to(dev)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    bs = budget.batch_size
    with captured() as messages:
        if name in FOOLBOX:
            fmodel = fb.PyTorchModel(view, bounds=(0.0, 1.0), device=dev)
            attack = _foolbox(name, norm, budget)
            parts = [attack(fmodel, x[i : i + bs], y[i : i + bs], epsilons=eps if name in BOUNDED else None)[1]
                     for i in range(0, len(x), bs)]
            adv = torch.cat(parts)
        elif name == "fab":
            fab = FABAttack_PT(view, norm="L2", n_restarts=1, n_iter=budget.fab_iter, eps=float(x[0].numel()),
                               seed=seed, verbose=False, device=dev)
            adv = torch.cat([fab.perturb(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)])
        else:
            aa = _autoattack(view, norm, float(eps), budget, seed)
            aa.verbose = False
            if name.endswith("-long"):
                aa.apgd.n_iter, aa.apgd.n_restarts = budget.long_iter, budget.long_restarts
            aa.attacks_to_run = [name.removesuffix("-long")]
            adv, _ = aa.run_standard_evaluation(x, y, batch_size=bs)
    return checked_run(name, view, x, y, adv, norm, eps if name in BOUNDED else None, time.perf_counter() - t0,
                       messages, bs)


def autoattack_standard(view: AttackView, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float,
                        budget: AttackBudget | None = None, seed: int = 0, attacks: Sequence[str] = STANDARD
                        ) -> tuple[AttackRun, torch.Tensor]:
    """AutoAttack's standard evaluation (:data:`STANDARD`, each attack on what the previous left robust), or the
    first ``attacks`` of it (e.g. only its gradient attacks, APGD-CE and APGD-T).

    Returns the run and ``broken_by`` (B,) int8: -1 clean error, ``i`` the index in ``attacks`` of the first
    attack that fooled the image, ``len(attacks)`` robust to all of them."""
    budget = budget or AttackBudget()
    attacks = tuple(attacks)
    if attacks != STANDARD[: len(attacks)] or not attacks:
        raise ValueError(f"attacks must be a leading part of AutoAttack's standard sequence {STANDARD}, got {attacks}")
    dev = _device(view)
    x, y = x.to(dev), y.to(dev)
    aa = _autoattack(view, norm, eps, budget, seed)
    aa.verbose = False
    broken = torch.full((len(x),), len(attacks), dtype=torch.int8)
    broken[_label(view, x, budget.batch_size).cpu() != y.cpu()] = -1
    adv = x.clone()
    t0 = time.perf_counter()
    with captured() as messages:
        for i, attack in enumerate(attacks):
            idx = (broken == len(attacks)).nonzero().flatten()
            if len(idx) == 0:
                break
            aa.attacks_to_run = [attack]
            a, _ = aa.run_standard_evaluation(x[idx.to(dev)], y[idx.to(dev)], batch_size=budget.batch_size)
            fooled = _label(view, a, budget.batch_size).cpu() != y[idx.to(dev)].cpu()
            broken[idx[fooled]] = i
            adv[idx[fooled].to(dev)] = a[fooled.to(dev)]
    return checked_run("autoattack", view, x, y, adv, norm, eps, time.perf_counter() - t0, messages,
                       budget.batch_size), broken
