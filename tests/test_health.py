"""Dead memories (dam_utils.health) on constructed models whose dead memories are known."""

from __future__ import annotations

import math

import pytest
import torch

from dam_utils.health import (
    captured_by_dead,
    dead_memories,
    health_report,
    one_vote_share,
    positive_class_weights,
    silent_memories,
    top_contributors,
    without_dead,
)
from dam_utils.model import DAM


def _model_with_known_dead(mnist) -> tuple[DAM, torch.Tensor, torch.Tensor]:
    """Six memories: 0-2 copies of training digits (alive), 3 an inverted digit (dead and silent),
    4 dead but lifted by a large positive class weight on some image (dead, not silent),
    5 all-zero visible part with negative class weights (a_mu = +sum|xc| > 0 everywhere: alive)."""
    x = mnist.x_train[:500]
    xi = torch.zeros(6, 784)
    xc = torch.full((6, 10), -0.5)
    xi[:3] = x[:3]
    xi[3] = -x[3]  # xi.v ~ -(agreement of backgrounds): far below 0 on every digit
    xc[3] = 0.2
    # memory 4: a_mu = xi.v - sum xc sits just below 0 on its best image, and 2 xc_0 lifts it above
    xi[4] = x[4] * 0.01
    best = (x @ xi[4]).max().item()
    xc[4] = 0.0
    xc[4, 0] = 1.0
    xc[4, 1] = best - 1.0 + 0.05  # sum xc = best + 0.05 > max xi.v  ->  a_mu <= -0.05 on every image
    xc[5] = -0.5
    model = DAM(xi, xc, n=3, T=100.0)
    dead = torch.tensor([False, False, False, True, True, False])
    silent = torch.tensor([False, False, False, True, False, False])
    return model, dead, silent


def test_dead_and_silent_memories_are_found(mnist) -> None:
    model, dead, silent = _model_with_known_dead(mnist)
    x = mnist.x_train[:500]
    assert torch.equal(dead_memories(model, x, batch_size=64), dead)
    assert torch.equal(silent_memories(model, x, batch_size=64), silent)
    assert not (silent & ~dead).any()  # silent implies dead


def test_a_dead_memory_never_changes_an_output(mnist) -> None:
    """What 'dead' promises: removing the dead-and-silent memory leaves every D unchanged."""
    model, _, silent = _model_with_known_dead(mnist)
    x = mnist.x_train[:500].double()
    model = DAM(model.xi.double(), model.xc.double(), model.n, model.T)  # float64: no rounding noise
    keep = ~silent
    pruned = DAM(model.xi[keep], model.xc[keep], model.n, model.T)
    torch.testing.assert_close(pruned.predict_energy(x), model.predict_energy(x), rtol=1e-12, atol=1e-12)
    assert torch.equal(pruned.predict(x), model.predict(x))


def test_health_report_counts(mnist) -> None:
    model, dead, _ = _model_with_known_dead(mnist)
    rep = health_report(model, mnist.x_train[:500], mnist.x_test[:200])
    assert rep["dead_train_%"] == 100.0 * dead.float().mean().item()
    assert rep["silent_train_%"] == pytest.approx(100.0 / 6)
    assert sum(rep["positive_class_weights_dead"]) == int(dead.sum())
    assert sum(rep["positive_class_weights_live"]) == int((~dead).sum())
    assert positive_class_weights(model).tolist() == [0, 0, 0, 10, 2, 0]


def test_without_dead_keeps_exactly_the_live_memories(mnist) -> None:
    """Dead is not silent: memory 4 still lifts its classes, so a pruned model need not predict the same
    (chapter 1 measures whether it does); what is promised is which memories remain."""
    model, dead, _ = _model_with_known_dead(mnist)
    pruned = without_dead(model, mnist.x_train[:500])
    assert pruned.K == int((~dead).sum())
    assert torch.equal(pruned.xi, model.xi[~dead]) and torch.equal(pruned.xc, model.xc[~dead])


def test_captured_by_dead_names_the_dead_top_contributor(mnist) -> None:
    model, dead, _ = _model_with_known_dead(mnist)
    x = mnist.x_train[:500]
    alpha = torch.zeros(3, dtype=torch.long)
    v = torch.stack([x[0], x[1], x[4]])  # memory 4 (dead) has the only large positive weight for class 0
    top = top_contributors(model, v, alpha)
    assert torch.equal(captured_by_dead(model, v, alpha, x), dead[top])
    assert top[2].item() == 4 and captured_by_dead(model, v, alpha, x)[2]  # memory 4 itself on its own digit


def test_one_vote_share() -> None:
    assert one_vote_share({"positive_class_weights_live": [1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]}) == 75.0
    assert math.isnan(one_vote_share({"positive_class_weights_live": [0] * 11}))
