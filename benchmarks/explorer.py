"""How fast chapter 3's explorer opens from its cache, against computing what it shows.

Prints the wall time of ``deformation_explorer()`` (imports excluded: the data, the cache and the widgets), the
time to recompute the same traces with the committed models (``compute_explorer_traces``, what the explorer needed
the chapter's cells for before it had a cache), their ratio, and the time of the box's on-demand deformation of
one new test image per model. Prints measurements, never asserts::

    python benchmarks/explorer.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dam_utils.book_models import obtain_models
from dam_utils.data import load_mnist
from dam_utils.deform import DeformConfig
from dam_utils.explorer_traces import EXPLORER_N, ExplorerConfig, compute_explorer_traces
from dam_utils.widgets import deformation_explorer


def main() -> None:
    t0 = time.perf_counter()
    ex = deformation_explorer()
    opened = time.perf_counter() - t0
    doc_cfg = ExplorerConfig.cpu()
    data = load_mnist()
    cm = obtain_models(EXPLORER_N, "cpu", data)
    t0 = time.perf_counter()
    compute_explorer_traces(cm.models, cm.loss_power, data, doc_cfg, DeformConfig.cpu())
    computed = time.perf_counter() - t0
    print(f"explorer opened from the cache: {opened:.2f} s")
    print(f"the same traces recomputed:    {computed:.2f} s   ratio {computed / opened:.1f}x")
    for n in EXPLORER_N:
        ex.model.value = n
        t0 = time.perf_counter()
        ex.add_image(1234)
        print(f"box, one new image, n = {n}:   {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
