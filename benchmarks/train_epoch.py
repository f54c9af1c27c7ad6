"""Epoch time of the DAM trainer against this machine's GEMM floor and a plain NumPy version.

Prints measured ratios (never asserts): run with ``make bench`` or
``python benchmarks/train_epoch.py [--device cuda] [--n 30] [--K 2000]``.

* GEMM floor: the two epoch-size matrix products every epoch must do (forward
  ``V xi^T`` and backward ``Q^T V``, 60 minibatches of 1000), timed with the same torch.
* Our epoch: :func:`dam_utils.train.train` for one full epoch (60 minibatches), no evaluation.
* NumPy float64: the same minibatch step written straightforwardly (the B x K x C tensors
  materialised), timed on a few minibatches and scaled to an epoch.
* Peak memory: resident set size (CPU) or ``torch.cuda.max_memory_allocated`` (CUDA).
* ``--stack S``: S seeds trained at once (:func:`dam_utils.train_stack.train_stack`, the GPU path of issue 11):
  time per model-epoch and the throughput against one model at a time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dam_utils.data import load_mnist
from dam_utils.train import TrainConfig, epoch_batches, init_weights, train
from dam_utils.train_stack import train_stack


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_floor(B: int, K: int, batches: int, device: torch.device, repeats: int = 3) -> float:
    """Seconds for the epoch's two GEMMs: (B,784)@(784,K) and (K,B)@(B,784), ``batches`` times."""
    v = torch.rand(B, 784, device=device)
    xi = torch.rand(K, 784, device=device)
    q = torch.rand(B, K, device=device)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        for _ in range(batches):
            v @ xi.T
            q.T @ v
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def numpy_step(w: np.ndarray, vel: np.ndarray, v: np.ndarray, y: np.ndarray, cfg: TrainConfig, T: float) -> None:
    """The straightforward float64 NumPy minibatch step (eq. 1, eq. 3 and the App. A update)."""
    n, m = cfg.n, cfg.m
    xi, xc = w[:, :784], w[:, 784:]
    h = v @ xi.T  # (B, K)
    others = xc.sum(1, keepdims=True) - xc  # (K, C)
    plus = h[:, :, None] + (xc - others)[None]  # (B, K, C)
    minus = h[:, :, None] + (-xc - others)[None]  # (B, K, C)
    fp, fm = np.maximum(plus / T, 0), np.maximum(minus / T, 0)
    out = np.tanh((fp**n - fm**n).sum(1))  # (B, C)
    t = -np.ones_like(out)
    t[np.arange(len(y)), y] = 1
    g = 2 * m * (out - t) ** (2 * m - 1) * (1 - out**2)  # dC/dD, (B, C)
    dplus = g[:, None, :] * (n / T) * fp ** (n - 1)  # (B, K, C)
    dminus = -g[:, None, :] * (n / T) * fm ** (n - 1)
    dh = (dplus + dminus).sum(2)  # (B, K)
    grad = np.empty_like(w)
    grad[:, :784] = dh.T @ v
    # d plus/d xc_gamma = delta - (1 - delta) ; d minus/d xc_gamma = -delta - (1 - delta)
    s_plus, s_minus = dplus.sum(0), dminus.sum(0)  # (K, C)
    grad[:, 784:] = 2 * s_plus - (s_plus + s_minus).sum(1, keepdims=True)
    vel *= cfg.p
    vel -= grad
    w += cfg.eps0 * vel / np.maximum(np.abs(vel).max(1, keepdims=True), 1e-30)
    np.clip(w, -1, 1, out=w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--K", type=int, default=2000)
    ap.add_argument("--numpy-batches", type=int, default=2)
    ap.add_argument("--stack", type=int, default=1, help="also time this many seeds trained at once")
    args = ap.parse_args()
    device = torch.device(args.device)
    data = load_mnist()
    cfg = TrainConfig.paper(args.n, K=args.K, epochs=1)
    B, batches = 10 * cfg.per_class, cfg.batches_per_epoch

    floor = gemm_floor(B, cfg.K, batches, device)
    train(TrainConfig.paper(args.n, K=args.K, epochs=1, batches_per_epoch=3), data, device=device,
          progress=False, eval_every=0, health_every=0)  # warm-up: compile the kernels
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(2):
        _sync(device)
        t = time.perf_counter()
        train(cfg, data, device=device, progress=False, eval_every=0, health_every=0)
        _sync(device)
        times.append(time.perf_counter() - t)
    epoch = min(times)

    print(f"device            : {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    print(f"problem           : n={cfg.n}, K={cfg.K}, {batches} minibatches x {B} images = {batches * B} per epoch")
    print(f"GEMM floor        : {floor:.3f} s/epoch")
    print(f"our epoch         : {epoch:.3f} s/epoch  ({1000 * epoch:.1f} ms)")
    print(f"ratio epoch/floor : {epoch / floor:.2f}  (target <= 1.5 on CPU)")
    if args.stack > 1:
        seeds = list(range(args.stack))
        train_stack(TrainConfig.paper(args.n, K=args.K, epochs=1, batches_per_epoch=3), seeds, data, device=device,
                    progress=False, eval_every=0, health_every=0)  # warm-up: compile the stacked kernels
        _sync(device)
        t = time.perf_counter()
        train_stack(cfg, seeds, data, device=device, progress=False, eval_every=0, health_every=0)
        _sync(device)
        stacked = time.perf_counter() - t
        print(f"stack of {args.stack:<9d}: {stacked:.3f} s/epoch for {args.stack} models = "
              f"{1000 * stacked / args.stack:.1f} ms per model-epoch; throughput {args.stack * epoch / stacked:.2f}x "
              "one model at a time")

    if device.type == "cpu":
        w = init_weights(cfg).double().numpy()
        vel = np.zeros_like(w)
        idx = epoch_batches(data.y_train, cfg, 0)[: args.numpy_batches]
        x, y = data.x_train.double().numpy(), data.y_train.numpy()
        t = time.perf_counter()
        for row in idx.numpy():
            numpy_step(w, vel, x[row], y[row], cfg, cfg.T_f)
        per_batch = (time.perf_counter() - t) / len(idx)
        np_epoch = per_batch * batches
        print(f"NumPy float64     : {per_batch:.2f} s/minibatch -> {np_epoch:.1f} s/epoch (timed on {len(idx)})")
        print(f"speed-up vs NumPy : {np_epoch / epoch:.1f}x  (target >= 20)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory (RSS) : {peak:.0f} MiB (includes the NumPy reference's B x K x C arrays)")
    else:
        print(f"peak GPU memory   : {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
        print("target on an H100 : <= 25 ms/epoch")


if __name__ == "__main__":
    main()
