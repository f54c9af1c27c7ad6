"""Throughput of the section-4 deformation (:func:`dam_utils.deform.deform`) on MNIST test images.

Runs ``deform`` to the crossing (what the transfer table, Fig. 5, needs) on ``--n-images`` test images for
one model and prints images/s, the time extrapolated to all 10000 test images (target: <= 3 min on a
2-core CPU, <= 10 s on a GPU), the steps taken and the numerical diagnostics (vanishing naive
gradients, float32 underflow, failures). Prints measurements, never asserts.

Model: the book's model for ``--n`` (``dam_utils.artifacts.load_book_model``) or a training checkpoint
(``--checkpoint runs/dam_n30_K2000_e180_seed0.ckpt``)::

    python benchmarks/attacks.py --n 30 --n-images 1000 [--device cuda] [--eps 0.1] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dam_utils.artifacts import load_book_model
from dam_utils.checkpoint import load_checkpoint
from dam_utils.data import load_mnist
from dam_utils.deform import DeformConfig, deform
from dam_utils.model import DAM, N_PIXELS
from dam_utils.train_config import TrainConfig


def load_model(n: int, checkpoint: str | None, device: torch.device) -> tuple[DAM, int, str]:
    """(model, loss power m, description) from a checkpoint or the book's artifacts."""
    if checkpoint:
        state = load_checkpoint(checkpoint)
        cfg = TrainConfig(**state["config"])
        w = state["weights"]
        model = DAM(w[:, :N_PIXELS].contiguous(), w[:, N_PIXELS:].contiguous(), cfg.n, cfg.temperature(state["epoch"]))
        return model.to(device), cfg.m, f"{checkpoint} (epoch {state['epoch']})"
    model, entry = load_book_model(n, device)
    return model, int(entry["config"]["m"]), f"book model n={n}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="power of the book model to load")
    ap.add_argument("--checkpoint", default=None, help="use a training checkpoint instead of the book model")
    ap.add_argument("--n-images", type=int, default=10000)
    ap.add_argument("--eps", type=float, default=DeformConfig().eps)
    ap.add_argument("--batch-size", type=int, default=DeformConfig().batch_size)
    ap.add_argument("--to-convergence", action="store_true", help="also run to the final image (Fig. 4)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, m, what = load_model(args.n, args.checkpoint, device)
    x = load_mnist().x_test[: args.n_images].to(device)
    cfg = DeformConfig(eps=args.eps, batch_size=args.batch_size, to_convergence=args.to_convergence)

    deform(model, x[: min(200, len(x))], m, cfg.replace(max_steps=3))  # warm-up: compile the kernels
    _sync(device)
    t = time.perf_counter()
    res = deform(model, x, m, cfg)
    _sync(device)
    wall = time.perf_counter() - t
    s = res.summary()
    rate = len(x) / wall
    threads = f"CPU, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    print(f"device              : {device} ({name}, torch {torch.__version__})")
    print(f"model               : {what}, n={model.n}, K={model.K}, T={model.T:g}, m={m}")
    print(f"config              : eps={cfg.eps}, batch_size={cfg.batch_size}, "
          f"to_convergence={cfg.to_convergence}")
    print(f"images              : {len(x)} in {wall:.1f} s -> {rate:.1f} images/s")
    print(f"extrapolated 10000  : {10000 / rate:.1f} s  (target <= 180 s on CPU, <= 10 s on GPU)")
    print(f"steps to crossing   : median {s['median_cross_step']:.0f}, max {int(res.cross_step.max())}")
    print(f"crossed / failed    : {s['crossed']} / {s['failed']}  (behind = second choice: "
          f"{s['behind_is_second']}, a third class: {s['behind_is_third_class']})")
    print(f"boundary distance   : median {s['median_boundary_distance']:.3f} (L2), "
          f"max |D_top - D_second| there {s['max_abs_boundary_gap']:.2e}")
    print(f"vanishing naive grad: {s['images_with_vanishing_naive_gradient']} images "
          f"({s['steps_with_vanishing_naive_gradient']} image-steps) would have had an exactly zero gradient")
    print(f"float32 underflow   : {s['images_with_float32_underflow']} images used the float64 fallback; "
          f"{s['images_with_zero_gradient']} had no direction at all")


if __name__ == "__main__":
    main()
