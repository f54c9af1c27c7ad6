"""A large-n DAM as a guard beside an accurate but vulnerable model: the end of section 5, measured (chapter 5).

The paper: "The first model (with large n) detects a potential adversarial attack. In cases when it is
confident, and its label disagrees with the other more accurate model, one can use the prediction of the more
accurate model for the final classification decision. However if the large n model is unconfident of a
particular input, that input should be labeled as junk and not processed by the more accurate/vulnerable
model." Here:

* :func:`pair_decision` is that rule (``"paper"``) and two stricter variants the chapter compares it with:
  ``"reject_disagreement"`` (a confident guard that disagrees also rejects) and ``"guard_label"`` (a
  confident guard that disagrees overrides the accurate model). Output: a label, or :data:`REJECT`.
* :func:`operating_threshold`: the guard's confidence threshold, set on *training* digits so that a fixed
  share of them is rejected (never tuned on the test set or on the attacks).
* :func:`roc`: ROC curve and AUC of the guard's confidence, clean digits (positive) against a set of
  adversarial or rubbish images (negative), by scikit-learn.
* :func:`outcomes`: the shares of a set that the pair rejects, labels correctly and labels wrongly.
* :func:`pair_attack`: the white-box attacker who knows both models and descends both objectives (eq. (4),
  steps of eq. (5)) until the accurate model *and* the guard give the attacker's class, the guard confidently.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from .confidence import confidence
from .descent import direction, energy, take_step
from .objectives import Classifier, float64_twin, unit
from .params import check_choice, check_float, check_int

__all__ = [
    "REJECT",
    "RULES",
    "PairAttackResult",
    "operating_threshold",
    "outcomes",
    "pair_attack",
    "pair_decision",
    "roc",
]

REJECT = -1  # the pair's output for an input labelled as junk
RULES = ("paper", "reject_disagreement", "guard_label")


def pair_decision(acc_pred: np.ndarray, guard_pred: np.ndarray, guard_conf: np.ndarray, threshold: float,
                  rule: str = "paper") -> np.ndarray:
    """The pair's label per input, or :data:`REJECT`; all arrays (N,).

    An unconfident guard (``guard_conf < threshold``) always rejects. A confident guard that agrees gives the
    common label. A confident guard that disagrees: ``"paper"`` the accurate model's label (the paper's rule),
    ``"reject_disagreement"`` rejects, ``"guard_label"`` the guard's label.
    """
    check_choice("rule", rule, RULES)
    acc, guard = np.asarray(acc_pred).astype(np.int64), np.asarray(guard_pred).astype(np.int64)
    confident = np.asarray(guard_conf) >= threshold
    disagree = acc != guard
    if rule == "paper":
        out = acc.copy()
    elif rule == "reject_disagreement":
        out = np.where(disagree, REJECT, acc)
    else:
        out = guard.copy()
    return np.where(confident, out, REJECT)


def operating_threshold(train_conf: np.ndarray, reject_pct: float) -> float:
    """The confidence below which the guard rejects: the ``reject_pct`` percentile of its confidence on
    clean *training* digits (so about that share of clean digits is labelled junk)."""
    reject_pct = check_float("reject_pct", reject_pct, 0.0, 100.0)
    return float(np.percentile(np.asarray(train_conf, dtype=np.float64), reject_pct))


def roc(clean_conf: np.ndarray, other_conf: np.ndarray) -> dict[str, Any]:
    """ROC of the guard's confidence as a detector: clean images are the positives (kept), ``other``
    images the negatives (to be rejected). Returns ``fpr`` (share of ``other`` kept), ``tpr`` (share of
    clean kept), thresholds and ``auc`` (scikit-learn ``roc_curve`` / ``roc_auc_score``)."""
    clean, other = np.asarray(clean_conf, np.float64), np.asarray(other_conf, np.float64)
    if clean.size == 0 or other.size == 0:
        raise ValueError("roc needs at least one clean and one other image")
    y = np.r_[np.ones(clean.size), np.zeros(other.size)]
    s = np.r_[clean, other]
    fpr, tpr, thr = roc_curve(y, s)
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": float(roc_auc_score(y, s))}


def outcomes(decision: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Percent of a set that the pair rejects, labels correctly and labels wrongly (they sum to 100)."""
    d, y = np.asarray(decision), np.asarray(labels)
    rej = d == REJECT
    return {"rejected": 100.0 * float(rej.mean()), "correct": 100.0 * float((~rej & (d == y)).mean()),
            "wrong": 100.0 * float((~rej & (d != y)).mean())}


# ---------------------------------------------------------------------------------------------------------
# The white-box attacker
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PairAttackResult:
    """The white-box attack on a pair, per image (N,): the attacker's ``target`` (the accurate model's
    second choice on the clean image), ``success`` (both models give ``target``, the guard with confidence
    at least the threshold), ``steps``, the L2 ``distance`` from the clean image, and the images."""

    clean: torch.Tensor  # (N, 784)
    images: torch.Tensor  # (N, 784) where each image stopped
    target: torch.Tensor  # (N,)
    success: torch.Tensor  # (N,) bool
    steps: torch.Tensor  # (N,)
    acc_pred: torch.Tensor  # (N,) the accurate model's label of the final image
    guard_pred: torch.Tensor  # (N,)
    guard_conf: torch.Tensor  # (N,) float64
    zero_direction: torch.Tensor  # (N,) steps without any usable direction
    wall_time_s: float

    @property
    def distance(self) -> torch.Tensor:
        return (self.images - self.clean).double().norm(dim=1)

    def summary(self) -> dict[str, Any]:
        s = self.success
        return {"images": len(s), "success": int(s.sum()), "success_pct": 100.0 * float(s.double().mean()),
                "median_distance_success": float(self.distance[s].median()) if bool(s.any()) else math.nan,
                "median_steps_success": float(self.steps[s].double().median()) if bool(s.any()) else math.nan,
                "images_with_zero_direction": int((self.zero_direction > 0).sum()),
                "wall_time_s": round(self.wall_time_s, 1)}


def pair_attack(acc: Classifier, guard: Classifier, x: torch.Tensor, *, m_acc: int, m_guard: int,
                beta_guard: float, threshold: float, eps: float = 0.1, max_steps: int = 1500,
                batch_size: int = 1000) -> PairAttackResult:
    """Attack both models of a pair at once, from clean images ``x`` (N, 784).

    Target ``s``: the accurate model's second choice. Each step of eq. (5) (size ``eps``, clipped to the box)
    follows the sum of the unit directions of ``-grad C^s`` (eq. (4)) of the models not yet won over: the
    accurate model until it labels ``s``, the guard until it labels ``s`` with confidence ``>= threshold``
    (``confidence`` at ``beta_guard``). An image stops on success or after ``max_steps``. This attacker beats
    every rule of :func:`pair_decision` when it succeeds (both models give ``s``, the guard confidently).
    """
    m_acc, m_guard = check_int("m_acc", m_acc, 1, 1000), check_int("m_guard", m_guard, 1, 1000)
    eps = check_float("eps", eps, 0.0, None, lo_inclusive=False)
    max_steps = check_int("max_steps", max_steps, 1, 10**7)
    t0 = time.perf_counter()
    twins = float64_twin(acc), float64_twin(guard)
    parts = [_attack_chunk(acc, guard, twins, x[lo : lo + batch_size], m_acc, m_guard, beta_guard, threshold,
                           eps, max_steps) for lo in range(0, len(x), batch_size)]
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return PairAttackResult(clean=x.detach().cpu(), wall_time_s=time.perf_counter() - t0, **cat)


def _state(acc: Classifier, guard: Classifier, v: torch.Tensor, s: torch.Tensor, beta: float, threshold: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels of both models, the guard's confidence, and which of the two are won over; (A,) each."""
    pa = energy(acc, v).argmax(1)
    dg = energy(guard, v)
    pg, zg = dg.argmax(1), confidence(torch.tanh(dg).double().cpu(), beta).to(v.device)
    return pa, pg, zg, pa == s, (pg == s) & (zg >= threshold)


def _attack_chunk(acc: Classifier, guard: Classifier, twins: tuple[Any, Any], x: torch.Tensor, m_acc: int,
                  m_guard: int, beta: float, threshold: float, eps: float, max_steps: int) -> dict[str, torch.Tensor]:
    B, dev = x.shape[0], x.device
    s = energy(acc, x).topk(2, dim=1).indices[:, 1]  # (B,) the accurate model's second choice
    v = x.detach().clone()
    steps = torch.zeros(B, dtype=torch.long, device=dev)
    zero = torch.zeros(B, dtype=torch.long, device=dev)
    success = torch.zeros(B, dtype=torch.bool, device=dev)
    active = torch.arange(B, device=dev)
    for step in range(max_steps + 1):
        va, sa = v[active], s[active]
        _, _, _, won_a, won_g = _state(acc, guard, va, sa, beta, threshold)
        done = won_a & won_g
        success[active[done]] = True
        steps[active] = step
        if step == max_steps:
            break
        keep = ~done
        active, va, sa, won_a, won_g = active[keep], va[keep], sa[keep], won_a[keep], won_g[keep]
        if active.numel() == 0:
            break
        u = torch.zeros_like(va)
        if bool((~won_a).any()):
            u[~won_a] += direction(acc, twins[0], va[~won_a], sa[~won_a], m_acc, True).u
        if bool((~won_g).any()):
            u[~won_g] += direction(guard, twins[1], va[~won_g], sa[~won_g], m_guard, True).u
        u = unit(u)
        zero[active] += (u == 0).all(1).long()
        v[active] = take_step(va, u, eps, True)
    pa, pg, zg, _, _ = _state(acc, guard, v, s, beta, threshold)
    return {"images": v.cpu(), "target": s.cpu(), "success": success.cpu(), "steps": steps.cpu(),
            "acc_pred": pa.cpu(), "guard_pred": pg.cpu(), "guard_conf": zg.cpu(), "zero_direction": zero.cpu()}
