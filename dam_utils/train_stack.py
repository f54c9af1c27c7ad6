"""Several seeds of one DAM_n configuration trained at once, in one process (issue 11: the GPU path).

On a GPU one model's minibatch step (two 1000 x 784 x 2000 GEMMs, the fused B x K x C kernels of
:mod:`dam_utils.model` and the update) is too small to keep the device busy: the time goes to launching
kernels. Here S models that differ only in their seed sit on a leading dimension, so every launch does the
work of S models: ``v @ xi.mT`` becomes a batched GEMM over (S, B, 784) x (S, 784, K), and the fused
kernels and the update of App. A (:func:`dam_utils.train.train_step`, :func:`~dam_utils.train.momentum_update`)
run unchanged on the stacked tensors.

Each model sees exactly what :func:`dam_utils.train.train` would show it alone: its initial weights
(:func:`~dam_utils.train.init_weights` with its seed) and its minibatches (:func:`~dam_utils.train.epoch_batches`
with its seed), so a stack is S independent runs of the published algorithm, and
``tests/test_train_stack.py`` checks each model against a run of :func:`~dam_utils.train.train`. The loss,
errors and counts of an epoch stay on the device and are read once per epoch (one host synchronisation per
epoch, not three per minibatch).

A stack writes one resumable checkpoint (all S models, their velocities and histories). ``budget_s`` stops a
run after the epoch in which that many seconds of wall time have passed (a GPU session's time is short); the
checkpoint then holds the stopped state and the same call continues it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import check_compatible, load_checkpoint, save_checkpoint
from .model import DAM
from .provenance import environment_info
from .train import TrainState, _denormals_flushed, epoch_batches, epoch_checks, init_weights, train_step
from .train_config import TrainConfig, TrainResult

try:  # tqdm is optional: the GPU machine has torch, numpy and scipy only
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds of a stack: at least one, distinct, non-negative integers."""
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be one or more distinct integers >= 0, got {seeds}")
    return seeds


def stack_state(cfg: TrainConfig, seeds: Sequence[int], device: torch.device | str, n_inputs: int) -> TrainState:
    """The stacked initial state: model s starts from ``init_weights`` of ``cfg`` with seed ``seeds[s]``."""
    w = torch.stack([init_weights(dataclasses.replace(cfg, seed=s), "cpu", n_inputs) for s in seeds])  # (S, K, N+C)
    return TrainState.from_weights(w.to(device))


def stack_batches(labels: torch.Tensor, cfg: TrainConfig, seeds: Sequence[int], epoch: int) -> torch.Tensor:
    """The epoch's minibatches of every model, (batches_per_epoch, S, 10 * per_class): model s draws them
    exactly as :func:`~dam_utils.train.epoch_batches` does for seed ``seeds[s]``."""
    return torch.stack([epoch_batches(labels, dataclasses.replace(cfg, seed=s), epoch) for s in seeds], 1)


def _run_config(cfg: TrainConfig, seeds: Sequence[int]) -> dict[str, Any]:
    return {**cfg.to_dict(), "seed": None, "seeds": list(seeds)}


def train_stack(
    cfg: TrainConfig,
    seeds: Sequence[int],
    data: Any,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    resume: bool = True,
    eval_every: int = 1,
    health_every: int = 10,
    progress: bool = True,
    stop_after: int | None = None,
    budget_s: float | None = None,
) -> list[TrainResult]:
    """Train ``cfg`` once per seed, all seeds at once; returns one :class:`TrainResult` per seed, in order.

    Arguments as :func:`dam_utils.train.train` (``cfg.seed`` is ignored: ``seeds`` replace it), plus
    ``budget_s``: stop after the epoch in which this many seconds (of this call) have passed. Each result's
    config carries its own seed, its history the same keys as ``train``'s; its ``wall_time_s`` is the wall
    time of the whole stack (the models were trained together), and its environment says so under ``stack``.
    A stopped run (``stop_after``, ``budget_s``) returns results with fewer epochs than ``cfg.epochs``.
    """
    seeds = check_seeds(seeds)
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s}")
    name = getattr(data, "name", cfg.dataset)
    if name != cfg.dataset:
        raise ValueError(f"the config says dataset={cfg.dataset!r} but the data is {name!r}")
    device = torch.device(device)
    dt = getattr(torch, cfg.dtype)
    x_train, y_train = data.x_train.to(device, dt), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device, dt), data.y_test.to(device)
    S = len(seeds)

    state = stack_state(cfg, seeds, device, x_train.shape[1])  # (S, K, N), (S, K, 10) and velocities
    histories: list[list[dict[str, float]]] = [[] for _ in seeds]
    env = {**environment_info(device), "stack": {"seeds": seeds, "size": S}}
    run_config = _run_config(cfg, seeds)
    start, wall_before = 0, 0.0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, map_location=device)
        check_compatible(saved["config"], run_config)
        state = TrainState.from_weights(saved["weights"].to(device, dt), saved["velocity"].to(device, dt))
        histories, start = [list(h) for h in saved["histories"]], int(saved["epoch"])
        wall_before = float(saved["wall_time_s"])
        env["resumed_from_epoch"] = start

    def snapshot(epoch: int, wall: float) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, dict(
                config=run_config, epoch=epoch, weights=state.weights().cpu(), velocity=state.velocity().cpu(),
                histories=histories,
                wall_time_s=wall, environment=env))

    def model(s: int, epoch: int) -> DAM:
        return DAM(state.xi[s], state.xc[s], cfg.n, cfg.temperature(epoch))

    t0 = time.perf_counter()
    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + stop_after)
    bar = tqdm(range(start, end), desc=f"DAM n={cfg.n} x{S} seeds", disable=not progress, initial=start,
               total=cfg.epochs) if tqdm else range(start, end)
    for epoch in bar:
        T, eps = cfg.temperature(epoch), cfg.learning_rate(epoch)
        wrong = torch.zeros(S, dtype=torch.int64, device=device)
        loss_sum = torch.zeros(S, dtype=torch.float64, device=device)
        seen = 0
        with _denormals_flushed(cfg.flush_denormal):
            for idx in stack_batches(y_train, cfg, seeds, epoch).to(device):  # idx: (S, B)
                v, y = x_train[idx], y_train[idx]  # (S, B, N), (S, B)
                out, loss = train_step(state, v, y, cfg, T, eps)  # (S, B, 10), (S,)
                wrong += (out.argmax(-1) != y).sum(-1)
                loss_sum += loss
                seen += idx.shape[1]
        wall = wall_before + time.perf_counter() - t0
        for s, (w, ls) in enumerate(zip(wrong.tolist(), loss_sum.tolist(), strict=True)):
            rec = dict(epoch=epoch + 1, T=T, eps=eps, loss=ls / seen, train_error=100.0 * w / seen)
            rec.update(epoch_checks(model(s, epoch + 1), epoch + 1, cfg, x_train, x_test, y_test, eval_every,
                                    health_every))
            rec["wall_time_s"] = wall
            histories[s].append(rec)
        if tqdm and progress:
            bar.set_postfix(test=" ".join(f"{h[-1].get('test_error', float('nan')):.2f}%" for h in histories))
        out_of_time = budget_s is not None and time.perf_counter() - t0 >= budget_s
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == end or out_of_time:
            snapshot(epoch + 1, wall_before + time.perf_counter() - t0)
        if out_of_time:
            break
    wall = wall_before + time.perf_counter() - t0
    done = len(histories[0])
    results = []
    for s, seed in enumerate(seeds):
        final = DAM(state.xi[s].clone(), state.xc[s].clone(), cfg.n, cfg.temperature(done))
        results.append(TrainResult(model=final, history=histories[s], wall_time_s=wall,
                                   config=dataclasses.replace(cfg, seed=seed), environment=dict(env)))
    return results

