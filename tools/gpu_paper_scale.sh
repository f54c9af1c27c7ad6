#!/usr/bin/env bash
# Issue 11 on a lent GPU, one phase per device call (dam_utils/paper_scale.py says what each writes).
# Run from the repository root on the device machine, with data/mnist.npz carried:
#
#   bash tools/gpu_paper_scale.sh bench    # ms/epoch on CUDA, GEMM floor, one model vs a stack of 3 (about 1 min)
#   bash tools/gpu_paper_scale.sh book0    # seed 0 of n = 2, 3, 20, 30 at 3000 epochs: the book models
#   bash tools/gpu_paper_scale.sh book12   # seeds 1 and 2 of the same, stacked
#   bash tools/gpu_paper_scale.sh sweep    # n = 2 ... 40, seeds 0-2 stacked, EPOCHS (default 300) epochs, no weights
#
# BUDGET (seconds of training, default 480) leaves a device call's 600 s room to measure and pack. Every phase
# writes its pack under $OUT after each finished stack, so a call cut short still returns what was finished.
# Then, on the CPU machine: .venv/bin/python -m dam_utils.paper_scale import <the returned folder>
set -euo pipefail
: "${OUT:?set OUT to the folder whose files come back}"
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-480}
export DAM_COMPILE=${DAM_COMPILE:-1}
$PY -c 'import torch; print("torch", torch.__version__, "|", torch.cuda.get_device_name(0))'
case "${1:-}" in
  bench)
    $PY benchmarks/train_epoch.py --device cuda --n 30 --K 2000 --stack 3 | tee "$OUT/bench_train_epoch.txt" ;;
  book0)
    $PY -m dam_utils.paper_scale run --out "$OUT" --device cuda --n 2 3 20 30 --seeds 0 --budget-s "$BUDGET" ;;
  book12)
    $PY -m dam_utils.paper_scale run --out "$OUT" --device cuda --n 2 3 20 30 --seeds 1 2 --budget-s "$BUDGET" ;;
  sweep)
    $PY -m dam_utils.paper_scale run --out "$OUT" --device cuda --kind sweep --profile paper \
      --epochs "${EPOCHS:-300}" --n 2 3 4 6 8 10 15 20 25 30 40 --seeds 0 1 2 --budget-s "$BUDGET" ;;
  *)
    echo "usage: bash tools/gpu_paper_scale.sh bench|book0|book12|sweep" >&2; exit 2 ;;
esac
