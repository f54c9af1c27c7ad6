"""dam_utils.explorer_traces: which frames are kept, the cache round trip and its refusal when stale, and the
committed cache of chapter 3's explorer recomputed on a sample with the code as it is now."""

from __future__ import annotations

import numpy as np
import pytest

from dam_utils import artifacts
from dam_utils.deform import DeformConfig
from dam_utils.explorer_traces import (
    EXPLORER,
    EXPLORER_N,
    ExplorerConfig,
    compute_explorer_traces,
    frame_positions,
    load_explorer_traces,
    recheck_explorer_traces,
    save_explorer_traces,
)
from dam_utils.paths import artifacts_dir
from dam_utils.results_cache import StaleResultError
from dam_utils.train import train
from dam_utils.train_config import TrainConfig

#: Up to the crossing: float16 storage of the frames (2.4e-4), and float noise between a batch of images and one
#: image alone (measured: log C within 2e-4 on the committed cache).
FRAME_TOL = 1e-3
LOG_C_TOL = 1e-3
#: After the crossing, on the way to convergence: the drift measured between a batch and one image alone was
#: at most 0.08 (pixels live in [-1, 1]); a different image would differ by ~1 on many pixels.
POST_FRAME_TOL = 0.25


@pytest.mark.parametrize("n_steps, cross, max_frames", [(5, 2, 10), (1500, 88, 60), (300, -1, 20), (61, 60, 8),
                                                          (100, 1, 6)])
def test_frame_positions_keep_the_crossing_and_respect_the_budget(n_steps, cross, max_frames) -> None:
    keep = frame_positions(n_steps, cross, max_frames)
    assert np.all(np.diff(keep) > 0) and keep[0] == 0 and keep[-1] == n_steps - 1
    assert len(keep) <= max(max_frames, n_steps if n_steps <= max_frames else 0)
    if cross >= 0:
        assert cross in keep and (cross == 0 or cross - 1 in keep)
    if n_steps <= max_frames:
        assert np.array_equal(keep, np.arange(n_steps))


def test_round_trip_recheck_and_stale_refusal(tiny, mnist) -> None:
    root, models, m = tiny
    cfg, dcfg = ExplorerConfig.smoke(), DeformConfig.smoke(max_steps=200)
    traces = compute_explorer_traces(models, m, mnist, cfg, dcfg)
    save_explorer_traces(traces, cfg, dcfg, wall=1.0, root=root)
    back, doc = load_explorer_traces(root)
    assert list(back) == [2, 3] and [len(ts) for ts in back.values()] == [cfg.n_images] * 2
    for n in traces:
        for a, b in zip(traces[n], back[n], strict=True):
            assert [a.index, a.label, a.top, a.second, a.cross_step] == [b.index, b.label, b.top, b.second,
                                                                         b.cross_step]
            assert np.array_equal(a.steps, b.steps) and len(a.steps) <= cfg.max_frames
            assert np.abs(a.frames - b.frames).max() <= FRAME_TOL
            assert np.array_equal(a.log_c_top, b.log_c_top, equal_nan=True)
            assert a.label == int(mnist.y_test[a.index])
    check = recheck_explorer_traces(back, doc, mnist, n_sample=cfg.n_images, root=root)
    assert check["checked"] == 2 * cfg.n_images and check["mismatches"] == 0, check
    assert check["pre_frame_max_abs"] <= FRAME_TOL and check["pre_log_c_max_abs"] <= LOG_C_TOL, check
    book3 = artifacts.book_model_name(3, root)
    other = train(TrainConfig.smoke(3, K=40, epochs=3, seed=7), mnist, progress=False)
    artifacts.save_model(other, mnist, root=root)
    with pytest.raises(StaleResultError, match=r"[Rr]ecompute"):
        load_explorer_traces(root)
    with artifacts._locked_manifest(root) as manifest:
        manifest["book_models"]["3"] = book3
    load_explorer_traces(root)


@pytest.mark.slow
def test_committed_explorer_cache_matches_the_code(mnist) -> None:
    if EXPLORER not in artifacts.read_manifest(artifacts_dir())["artifacts"]:
        pytest.skip("no cached explorer traces (python -m dam_utils.explorer_traces)")
    traces, doc = load_explorer_traces()  # refused if stale
    assert sorted(traces) == sorted(EXPLORER_N)
    check = recheck_explorer_traces(traces, doc, mnist, n_sample=3, seed=1)
    assert check["checked"] == 3 * len(EXPLORER_N) and check["mismatches"] == 0, check
    assert check["pre_frame_max_abs"] <= FRAME_TOL and check["pre_log_c_max_abs"] <= LOG_C_TOL, check
    assert check["post_frame_max_abs"] <= POST_FRAME_TOL, check
