"""What subnormal float32 numbers cost a large-n DAM on this CPU, and what ``TrainConfig.flush_denormal`` saves.

Prints measured ratios (never asserts): ``python benchmarks/subnormals.py [--steps 3]``.

* Training steps: :func:`dam_utils.train.train_step` at n = 30 from the published initialisation on Fashion-MNIST
  minibatches (chapter 6), where ``(a / T)^29`` of weakly active memories falls below 1.2e-38; with IEEE
  subnormals and with them flushed to zero.
* Evaluation: the labels of 2000 Fashion-MNIST test images by the committed n = 30 Fashion-MNIST DAM, both ways,
  and whether a single label differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dam_utils.artifacts import load_model, read_manifest
from dam_utils.data import load_fashion_mnist
from dam_utils.train import TrainConfig, TrainState, _denormals_flushed, epoch_batches, init_weights, train_step


def timed(fn, flush: bool) -> tuple[float, object]:
    with _denormals_flushed(flush):
        fn()  # warm-up (compilation, caches)
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    data = load_fashion_mnist()
    cfg = TrainConfig.cpu(30, dataset=data.name)
    idx = epoch_batches(data.y_train, cfg, 0)[: args.steps]

    def steps() -> None:
        state = TrainState.from_weights(init_weights(cfg))
        for b in idx:
            train_step(state, data.x_train[b], data.y_train[b], cfg, cfg.T_f, cfg.eps0)

    ieee, _ = timed(steps, False)
    ftz, _ = timed(steps, True)
    print(f"{args.steps} training steps, n = 30, Fashion-MNIST: {ieee:.2f} s with subnormals, {ftz:.2f} s flushed "
          f"(ratio {ieee / ftz:.1f})")
    name = read_manifest().get("fashion_models", {}).get("30")
    if name is None:
        print("no committed Fashion-MNIST n = 30 DAM: evaluation skipped")
        return
    model, _ = load_model(name)
    x = data.x_test[:2000]
    t_ieee, p_ieee = timed(lambda: model.predict(x), False)
    t_ftz, p_ftz = timed(lambda: model.predict(x), True)
    print(f"labels of 2000 test images by {name}: {t_ieee:.2f} s with subnormals, {t_ftz:.2f} s flushed "
          f"(ratio {t_ieee / t_ftz:.1f}); labels that differ: {int((p_ieee != p_ftz).sum())}")


if __name__ == "__main__":
    main()
