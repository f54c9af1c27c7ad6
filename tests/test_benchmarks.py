"""The benchmark's NumPy reference really is the same minibatch step as the trainer's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from dam_utils.train import TrainConfig, TrainState, init_weights, train_step

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("train_epoch", ROOT / "benchmarks" / "train_epoch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_numpy_reference_step_equals_train_step() -> None:
    bench = _bench()
    g = torch.Generator().manual_seed(0)
    for n, T in ((2, 60.0), (30, 650.0)):
        cfg = TrainConfig.smoke(n, K=25)
        w = init_weights(cfg).double()
        v = (torch.rand(40, 784, generator=g, dtype=torch.float64) * 2 - 1)
        v[:20] = torch.sign(w[:20, :784]) * 0.9
        y = torch.arange(40) % 10
        vel = torch.randn(w.shape, generator=g, dtype=torch.float64)
        w_np, vel_np = w.numpy().copy(), vel.numpy().copy()
        state = TrainState.from_weights(w, vel)
        train_step(state, v, y, cfg, T, cfg.eps0)
        bench.numpy_step(w_np, vel_np, v.numpy(), y.numpy(), cfg, T)
        np.testing.assert_allclose(vel_np, state.velocity().numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(w_np, state.weights().numpy(), rtol=1e-8, atol=1e-12)
