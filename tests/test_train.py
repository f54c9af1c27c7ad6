"""The published training algorithm: minibatches, schedules, the update rule, resume, checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dam_utils import model as M
from dam_utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dam_utils.train import (
    TrainConfig,
    TrainState,
    _compiled_update,
    _denormals_flushed,
    epoch_batches,
    init_weights,
    momentum_update,
    train,
    train_step,
)
from dam_utils.train_config import model_name


@pytest.fixture(scope="module")
def tiny_cfg() -> TrainConfig:
    return TrainConfig.smoke(3, K=30, epochs=4, batches_per_epoch=3, ramp_epochs=3)


def test_presets_stay_inside_published_ranges() -> None:
    for n in (2, 3, 20, 30):
        for cfg in (TrainConfig.paper(n), TrainConfig.cpu(n)):
            assert 0.6 <= cfg.p <= 0.95 and 0.01 <= cfg.eps0 <= 0.04 and cfg.f == 0.998
            assert cfg.init_mean == -0.3 and cfg.init_std == 0.3 and cfg.per_class == 100
            if n <= 3:
                assert cfg.m in (2, 3, 4) and 250 <= cfg.T_i <= 400 and 30 <= cfg.T_f <= 100
            else:
                assert cfg.m == 30 and 500 <= cfg.T_i == cfg.T_f <= 700
    assert TrainConfig.paper(30).epochs == 3000 and TrainConfig.paper(2).ramp_epochs == 200
    assert TrainConfig.paper(2).K == 2000


def test_schedules() -> None:
    cfg = TrainConfig.paper(2)
    assert cfg.temperature(0) == cfg.T_i
    assert cfg.temperature(100) == pytest.approx((cfg.T_i + cfg.T_f) / 2)
    assert cfg.temperature(200) == cfg.temperature(2999) == cfg.T_f
    assert TrainConfig.paper(30).temperature(0) == TrainConfig.paper(30).temperature(500)
    assert cfg.learning_rate(10) == pytest.approx(cfg.eps0 * 0.998**10)


def test_minibatches_hold_100_of_each_class(mnist) -> None:
    cfg = TrainConfig.paper(2)
    idx = epoch_batches(mnist.y_train, cfg, epoch=0)
    assert idx.shape == (60, 1000)
    counts = torch.stack([torch.bincount(mnist.y_train[row], minlength=10) for row in idx])
    assert (counts == 100).all()
    assert torch.equal(idx, epoch_batches(mnist.y_train, cfg, epoch=0))  # reproducible
    assert not torch.equal(idx, epoch_batches(mnist.y_train, cfg, epoch=1))  # reshuffled each epoch
    # within an epoch no example repeats unless its class is smaller than 6000
    small = [c for c in range(10) if (mnist.y_train == c).sum() >= 6000]
    for c in small:
        picked = idx.flatten()[mnist.y_train[idx.flatten()] == c]
        assert len(picked.unique()) == len(picked)


def test_initial_weights(tiny_cfg: TrainConfig) -> None:
    w = init_weights(dataclasses.replace(tiny_cfg, K=2000))
    assert w.shape == (2000, 794) and w.min() >= -1 and w.max() <= 1
    assert abs(w.mean().item() + 0.3) < 0.01 and abs(w.std().item() - 0.3) < 0.01


def test_each_memory_moves_by_exactly_eps(mnist) -> None:
    """First step: V = -dC/dxi, and every unclipped memory's largest change is eps (App. A)."""
    cfg = TrainConfig.smoke(3, K=40, epochs=1, batches_per_epoch=1, init_mean=0.0, init_std=0.05)
    before = init_weights(cfg)
    after = train(cfg, mnist, progress=False, eval_every=0).model
    delta = torch.cat([after.xi, after.xc], 1) - before
    moved = delta.abs().amax(1)
    unclipped = (torch.cat([after.xi, after.xc], 1).abs() < 1).all(1)
    assert unclipped.sum() > 30
    torch.testing.assert_close(moved[unclipped], torch.full_like(moved[unclipped], cfg.eps0), rtol=1e-5, atol=0)


def test_a_small_step_lowers_the_minibatch_loss(mnist) -> None:
    """The normalised update is a descent direction: C falls after a small step on the same batch."""
    cfg = TrainConfig.smoke(3, K=200)
    state = TrainState.from_weights(init_weights(cfg))
    v, y = mnist.x_train[:500], mnist.y_train[:500]
    for _ in range(3):
        state.v_xi.zero_(), state.v_xc.zero_()
        _, before = train_step(state, v, y, cfg, T=300.0, eps=1e-3)
        probe = TrainState.from_weights(state.weights())
        _, after = train_step(probe, v, y, cfg, T=300.0, eps=0.0)
        assert after < before


def test_an_idle_memory_coasts_unless_frozen(mnist) -> None:
    """The published update moves a memory by eps even when its gradient is exactly 0 (the momentum
    direction, renormalised); ``freeze_idle`` (a labelled option) keeps it in place instead."""
    v, y = mnist.x_train[:300], mnist.y_train[:300]
    for freeze in (False, True):
        cfg = TrainConfig.smoke(30, K=20, freeze_idle=freeze)
        w = init_weights(cfg)
        w[0, :784], w[0, 784:] = mnist.x_train[300:301].neg().squeeze(0) * 0.9, 0.9  # a_0 << 0: silent
        state = TrainState.from_weights(w, velocity=torch.ones_like(w))  # it was moving before
        before = state.weights().clone()
        train_step(state, v, y, cfg, T=cfg.T_f, eps=0.01)
        moved = (state.weights() - before).abs().amax(1)
        assert moved[0].item() == (0.0 if freeze else pytest.approx(0.01, rel=1e-4))
        assert (moved[1:] > 0).all()  # the others learn either way


def test_training_records_history_and_provenance(mnist) -> None:
    cfg = TrainConfig.smoke(3, K=30, epochs=2, batches_per_epoch=2)
    res = train(cfg, mnist, progress=False)
    assert [h["epoch"] for h in res.history] == [1, 2]
    assert 0 <= res.history[-1]["dead_train_%"] <= 100 and "dead_test_%" in res.history[-1]
    assert all(0 <= h["test_error"] <= 100 and h["loss"] > 0 for h in res.history)
    assert res.environment["torch"] == str(torch.__version__) and res.environment["device"] == "cpu"


def test_interrupted_training_resumes_to_the_same_weights(mnist, tiny_cfg, tmp_path) -> None:
    straight = train(tiny_cfg, mnist, progress=False)
    ckpt = tmp_path / "run.ckpt"
    first = train(tiny_cfg, mnist, progress=False, checkpoint=ckpt, checkpoint_every=1, stop_after=2)
    assert len(first.history) == 2 and load_checkpoint(ckpt)["epoch"] == 2
    resumed = train(tiny_cfg, mnist, progress=False, checkpoint=ckpt, checkpoint_every=1)
    assert torch.equal(resumed.model.xi, straight.model.xi)
    assert torch.equal(resumed.model.xc, straight.model.xc)
    assert [h["test_error"] for h in resumed.history] == [h["test_error"] for h in straight.history]
    assert resumed.environment["resumed_from_epoch"] == 2


def test_corrupted_checkpoint_is_refused(tmp_path) -> None:
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"weights": torch.ones(3, 3), "epoch": 1})
    assert load_checkpoint(path)["epoch"] == 1
    blob = bytearray(path.read_bytes())
    blob[-20] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


def test_foreign_checkpoint_is_refused(tmp_path, mnist, tiny_cfg) -> None:
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.ones(2)}, plain)  # a torch file, but not ours
    with pytest.raises(CheckpointError, match="not a dam-book checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="not a dam-book checkpoint"):
        train(tiny_cfg, mnist, progress=False, checkpoint=plain)
    # a dam-book checkpoint of another configuration: refused, naming the differing field
    other = tmp_path / "other.ckpt"
    train(dataclasses.replace(tiny_cfg, n=2), mnist, progress=False, checkpoint=other, stop_after=1)
    with pytest.raises(CheckpointError, match="n: checkpoint has 2, you asked for 3"):
        train(tiny_cfg, mnist, progress=False, checkpoint=other)


def test_no_half_written_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "x.ckpt"
    save_checkpoint(path, {"epoch": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]


def test_compiled_update_equals_the_eager_update() -> None:
    """The fused (torch.compile) update of a K = 2000 model moves the weights as the eager one does."""
    if not M.compile_enabled():
        pytest.skip("DAM_COMPILE=0")
    g = torch.Generator().manual_seed(0)
    w = torch.rand(2000, 794, generator=g) * 2 - 1
    vel = torch.randn(2000, 794, generator=g)
    grad = torch.randn(2000, 794, generator=g)
    grad[::7] = 0.0  # idle memories
    results = []
    for update in (momentum_update, _compiled_update()):
        s = TrainState.from_weights(w.clone(), vel.clone())
        gs = TrainState.from_weights(grad.clone())
        xi, xc, v_xi, v_xc = update(s.xi, s.xc, s.v_xi, s.v_xc, gs.xi, gs.xc, 0.6, torch.tensor(0.03), True)
        results.append((torch.cat([xi, xc], 1), torch.cat([v_xi, v_xc], 1)))
    if M._NO_COMPILER:
        pytest.skip("no working compiler")
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-6, atol=1e-6)
    assert (results[0][1][::7] == 0).all()  # frozen: no velocity left


def test_flush_denormal_acts_inside_training_only(mnist) -> None:
    """``flush_denormal`` flushes subnormal float32 numbers to zero during the updates and restores IEEE
    arithmetic afterwards; the model records the option in its name."""
    tiny = torch.tensor([1e-39])  # a float32 subnormal
    with _denormals_flushed(True):
        assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) > 0.0
    cfg = TrainConfig.smoke(30, K=20, flush_denormal=True)
    train(cfg, mnist, progress=False)
    assert float(tiny * 1.0) > 0.0
    assert "_ftz" in model_name(cfg) and "_ftz" not in model_name(TrainConfig.smoke(30))
