"""Dead memories (dam_utils.health) on constructed models whose dead memories are known."""

from __future__ import annotations

import pytest
import torch

from dam_utils.health import dead_memories, health_report, positive_class_weights, silent_memories
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
