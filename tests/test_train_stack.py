"""Several seeds trained at once (the GPU path of issue 11): each model is the run ``train`` makes alone."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dam_utils.checkpoint import CheckpointError, load_checkpoint
from dam_utils.model import energy_difference, reference_energy_difference
from dam_utils.train import train
from dam_utils.train_config import TrainConfig
from dam_utils.train_stack import check_seeds, train_stack

SEEDS = [0, 3, 7]


@pytest.fixture(scope="module")
def cfg() -> TrainConfig:
    return TrainConfig.smoke(3, K=30, epochs=3, batches_per_epoch=3, ramp_epochs=2)


@pytest.mark.parametrize("n", [2, 30])
def test_stacked_energy_difference_and_gradients_equal_each_model_alone(n: int) -> None:
    """eq. (1) on (S, B, N) images with (S, K, N), (S, K, C) weights: model s's D and its hand-derived gradients
    equal autograd through the literal eq. (1) of that model alone (float64)."""
    g = torch.Generator().manual_seed(n)
    S, B, K, T = 3, 5, 7, 1.3
    v = (torch.rand(S, B, 784, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    xi = (torch.rand(S, K, 784, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    xc = (torch.rand(S, K, 10, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    d = energy_difference(v, xi, xc, n, T)  # (S, B, 10)
    w = torch.rand(d.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((d * w).sum(), (v, xi, xc))
    for s in range(S):
        ref = reference_energy_difference(v[s], xi[s], xc[s], n, T)
        torch.testing.assert_close(d[s], ref, rtol=1e-10, atol=1e-12)
        ref_grads = torch.autograd.grad((ref * w[s]).sum(), (v, xi, xc))
        for got, want in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(got[s], want[s], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [3, 30])
def test_each_stacked_model_is_the_run_train_makes_alone(mnist, cfg: TrainConfig, n: int) -> None:
    """Same initial weights, same minibatches, same update: the weights agree to float32 rounding (a batched GEMM
    may add in another order than a single one) and the recorded errors exactly."""
    c = dataclasses.replace(cfg, n=n, m=30 if n > 3 else 3)
    stacked = train_stack(c, SEEDS, mnist, progress=False)
    assert [r.config.seed for r in stacked] == SEEDS
    for r in stacked:
        alone = train(r.config, mnist, progress=False)
        torch.testing.assert_close(r.model.xi, alone.model.xi, rtol=0, atol=1e-6)
        torch.testing.assert_close(r.model.xc, alone.model.xc, rtol=0, atol=1e-6)
        assert r.model.T == alone.model.T
        keys = ("epoch", "T", "eps", "train_error", "test_error", "dead_train_%", "dead_test_%")
        assert [[h.get(k) for k in keys] for h in r.history] == [[h.get(k) for k in keys] for h in alone.history]
        assert [h["loss"] for h in r.history] == pytest.approx([h["loss"] for h in alone.history], rel=1e-5)
        assert r.environment["stack"] == {"seeds": SEEDS, "size": len(SEEDS)}
    # the seeds really are different runs
    assert not torch.equal(stacked[0].model.xi, stacked[1].model.xi)


def test_an_interrupted_stack_resumes_exactly(mnist, cfg: TrainConfig, tmp_path) -> None:
    straight = train_stack(cfg, SEEDS, mnist, progress=False)
    ckpt = tmp_path / "stack.ckpt"
    first = train_stack(cfg, SEEDS, mnist, progress=False, checkpoint=ckpt, checkpoint_every=5, stop_after=1)
    assert len(first[0].history) == 1 and load_checkpoint(ckpt)["epoch"] == 1  # written when it stopped
    resumed = train_stack(cfg, SEEDS, mnist, progress=False, checkpoint=ckpt)
    for a, b in zip(resumed, straight, strict=True):
        assert torch.equal(a.model.xi, b.model.xi) and torch.equal(a.model.xc, b.model.xc)
        assert [h["test_error"] for h in a.history] == [h["test_error"] for h in b.history]
    assert resumed[0].environment["resumed_from_epoch"] == 1
    with pytest.raises(CheckpointError, match="seeds"):
        train_stack(cfg, [0, 3], mnist, progress=False, checkpoint=ckpt)


def test_a_time_budget_stops_after_the_epoch_and_leaves_a_checkpoint(mnist, cfg: TrainConfig, tmp_path) -> None:
    ckpt = tmp_path / "stack.ckpt"
    out = train_stack(cfg, SEEDS, mnist, progress=False, checkpoint=ckpt, checkpoint_every=100, budget_s=1e-9)
    assert [len(r.history) for r in out] == [1, 1, 1]
    assert load_checkpoint(ckpt)["epoch"] == 1
    done = train_stack(cfg, SEEDS, mnist, progress=False, checkpoint=ckpt)
    assert [len(r.history) for r in done] == [cfg.epochs] * 3


@pytest.mark.parametrize(("seeds", "budget"), [([], None), ([1, 1], None), ([-1], None), ([0], 0.0), ([0], -5.0)])
def test_bad_seeds_or_budget_fail_before_any_work(cfg: TrainConfig, seeds: list[int], budget: float | None) -> None:
    with pytest.raises(ValueError, match=r"seeds|budget_s"):
        train_stack(cfg, seeds, data=None, budget_s=budget)  # no data: it must fail before touching it
    if budget is None:
        with pytest.raises(ValueError, match="seeds"):
            check_seeds(seeds)
