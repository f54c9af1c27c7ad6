"""dam_utils.pairing: the pairing rule case by case, the operating threshold, ROC/AUC on constructed scores
with a known answer, and the invariants of the white-box attack on a pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dam_utils.confidence import confidence
from dam_utils.pairing import REJECT, RULES, operating_threshold, outcomes, pair_attack, pair_decision, roc
from dam_utils.params import ParameterError

# (accurate label, guard label, guard confidence) -> expected output per rule, threshold 0.5
CASES = [
    ((3, 3, 0.9), {"paper": 3, "reject_disagreement": 3, "guard_label": 3}),  # confident, agree
    ((3, 5, 0.9), {"paper": 3, "reject_disagreement": REJECT, "guard_label": 5}),  # confident, disagree
    ((3, 3, 0.2), {"paper": REJECT, "reject_disagreement": REJECT, "guard_label": REJECT}),  # unconfident
    ((3, 5, 0.2), {"paper": REJECT, "reject_disagreement": REJECT, "guard_label": REJECT}),
    ((3, 5, 0.5), {"paper": 3, "reject_disagreement": REJECT, "guard_label": 5}),  # at the threshold: accepted
]


@pytest.mark.parametrize("rule", RULES)
def test_pair_decision_cases(rule) -> None:
    acc, guard, conf = (np.array(v) for v in zip(*(c for c, _ in CASES), strict=True))
    assert pair_decision(acc, guard, conf, 0.5, rule).tolist() == [e[rule] for _, e in CASES]


def test_bad_rule_and_reject_share_are_refused() -> None:
    with pytest.raises(ParameterError, match="rule"):
        pair_decision(np.zeros(1), np.zeros(1), np.ones(1), 0.5, "vote")
    with pytest.raises(ParameterError, match="reject_pct"):
        operating_threshold(np.ones(3), 120.0)


def test_operating_threshold_rejects_the_asked_share() -> None:
    conf = np.linspace(0.1, 1.0, 1001)
    thr = operating_threshold(conf, 2.0)
    assert 100 * float((conf < thr).mean()) == pytest.approx(2.0, abs=0.1)


def test_roc_on_constructed_scores() -> None:
    clean, other = np.array([0.6, 0.7, 0.8, 0.9]), np.array([0.1, 0.65, 0.2, 0.3])
    assert roc(clean, other)["auc"] == pytest.approx(15 / 16)  # 15 of the 16 pairs ordered right
    assert roc(clean, clean - 1.0)["auc"] == 1.0
    assert roc(clean, clean)["auc"] == pytest.approx(0.5)
    r = roc(clean, other)
    assert r["fpr"][0] == 0 and r["tpr"][-1] == 1 and np.all(np.diff(r["fpr"]) >= 0)
    with pytest.raises(ValueError):
        roc(clean, np.array([]))


def test_outcomes_sum_to_100() -> None:
    o = outcomes(np.array([1, REJECT, 2, 3]), np.array([1, 1, 0, 3]))
    assert o == {"rejected": 25.0, "correct": 50.0, "wrong": 25.0}


def test_pair_attack_invariants(random_dam) -> None:
    acc, guard = random_dam(2, K=30, seed=1), random_dam(3, K=30, seed=2)
    x = torch.rand(12, 784, generator=torch.Generator().manual_seed(3)) * 2 - 1
    eps, steps = 0.2, 60
    r = pair_attack(acc, guard, x, m_acc=2, m_guard=2, beta_guard=5.0, threshold=0.2, eps=eps, max_steps=steps)
    assert r.images.min() >= -1 and r.images.max() <= 1
    assert (r.steps <= steps).all()
    assert (r.distance <= eps * r.steps.double() + 1e-4).all()
    assert torch.equal(r.target, acc.predict_energy(x).topk(2, 1).indices[:, 1])
    # success means both models give the target and the guard is confident, on the image returned
    s = r.success
    assert torch.equal(r.acc_pred[s], r.target[s]) and torch.equal(r.guard_pred[s], r.target[s])
    assert (r.guard_conf[s] >= 0.2).all()
    z = confidence(guard(r.images), 5.0)
    assert torch.allclose(z, r.guard_conf, atol=1e-6)
    assert r.summary()["success"] == int(s.sum())
    with pytest.raises(ParameterError, match="eps"):
        pair_attack(acc, guard, x, m_acc=2, m_guard=2, beta_guard=5.0, threshold=0.2, eps=0.0)
