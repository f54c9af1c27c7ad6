"""What chapter 3's explorer shows, cached: deformation traces of a fixed set of test images per book model.

The explorer (:mod:`dam_utils.widgets`) must open in seconds, without re-running the chapter. So the shipped
code deforms ``ExplorerConfig.n_images`` test images with every committed book model (section 4, eq. (5):
:func:`dam_utils.deform.deform` with a per-step trace), keeps at most ``max_frames`` snapshots of each
trajectory (every crossing frame among them, see :func:`frame_positions`) and both objectives at every step,
and stores them under ``artifacts/results/ch3_explorer_traces.*`` with the models' SHA-256, the configs and
the environment. Loading refuses a cache computed with other models
(:class:`~dam_utils.results_cache.StaleResultError`); :func:`recheck_explorer_traces` recomputes a sample.
A learner's own image is deformed on demand by :func:`trace_images` (the same code path).

    python -m dam_utils.explorer_traces            # recompute the cache (under a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .artifacts import load_book_model
from .book_models import obtain_models
from .data import Dataset, load_mnist
from .deform import DeformConfig, DeformResult, deform
from .model import DAM
from .params import Preset, int_field
from .results_cache import load_result, model_records, save_result

__all__ = ["EXPLORER", "EXPLORER_N", "ExplorerConfig", "ImageTrace", "committed_tracer", "compute_explorer_traces",
           "frame_positions", "load_explorer_traces", "recheck_explorer_traces", "save_explorer_traces",
           "trace_images", "traces_from_result"]

EXPLORER = "ch3_explorer_traces"
#: Book models the explorer shows (chapter 3's).
EXPLORER_N = (2, 3, 20, 30)


@dataclass(frozen=True)
class ExplorerConfig(Preset):
    """``n_images`` test images (the first of ``torch.randperm(10000)`` under ``seed``, as chapter 3 draws its
    figure images) and at most ``max_frames`` stored snapshots per trajectory."""

    n_images: int = int_field(8, 1, 10000)
    max_frames: int = int_field(60, 4, 10**5)
    seed: int = int_field(0, 0, 2**32 - 1)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {}, "cpu": {}, "smoke": {"n_images": 2, "max_frames": 8}}

    def test_indices(self, n_test: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randperm(n_test, generator=gen)[: self.n_images].tolist()


@dataclass
class ImageTrace:
    """One test image deformed by one model: ``frames[s]`` is the image after ``steps[s]`` steps of eq. (5)
    (``frames[0]`` the clean image), ``log_c_top[k]`` / ``log_c_second[k]`` both objectives after ``k``
    steps, ``cross_step`` the first step behind the decision boundary (-1: it never crossed)."""

    index: int  # position in the MNIST test set
    label: int
    top: int
    second: int
    cross_step: int
    steps: np.ndarray  # (S,) int
    frames: np.ndarray  # (S, 784) float32, pixels in [-1, 1]
    log_c_top: np.ndarray  # (L,) float32
    log_c_second: np.ndarray  # (L,) float32


def frame_positions(n_steps: int, cross_step: int, max_frames: int) -> np.ndarray:
    """Which of the ``n_steps`` snapshots (steps 0 .. n_steps - 1) to keep: at most ``max_frames``, spread evenly
    over the way to the boundary and, separately, over the way beyond it, always with the clean image, the
    last step before the crossing, the crossing and the last step."""
    if n_steps <= max_frames:
        return np.arange(n_steps)
    if cross_step <= 0:
        keep = np.linspace(0, n_steps - 1, max_frames)
    else:
        half = max_frames // 2 - 1
        keep = np.concatenate([np.linspace(0, cross_step - 1, half), [cross_step],
                               np.linspace(cross_step, n_steps - 1, max_frames - half - 1)])
    return np.unique(np.round(keep).astype(int))


def traces_from_result(res: DeformResult, index: Sequence[int], labels: Sequence[int],
                       max_frames: int) -> list[ImageTrace]:
    """The :class:`ImageTrace` of every traced image of ``res`` (``deform(..., trace=J, snapshot_every=1)``);
    ``index`` and ``labels``: the images' test-set positions and true labels."""
    tr = res.trace
    assert tr is not None and tr.snapshots is not None
    out = []
    for j, i in enumerate(index):
        valid = np.flatnonzero(~torch.isnan(tr.snapshots[j]).any(1).numpy())  # snapshots that exist
        keep = valid[frame_positions(len(valid), int(res.cross_step[j]), max_frames)]
        L = len(valid)  # with snapshot_every=1 the objectives are recorded at the same steps as the images
        out.append(ImageTrace(
            index=int(i), label=int(labels[j]), top=int(res.top[j]), second=int(res.second[j]),
            cross_step=int(res.cross_step[j]), steps=tr.snapshot_steps[keep].numpy().astype(np.int64),
            frames=tr.snapshots[j, keep].numpy().astype(np.float32),
            log_c_top=tr.log_c_top[j, :L].numpy().astype(np.float32),
            log_c_second=tr.log_c_second[j, :L].numpy().astype(np.float32)))
    return out


def trace_images(model: DAM, m: int, data: Dataset, index: Sequence[int], max_frames: int = 60,
                 dcfg: DeformConfig | None = None) -> list[ImageTrace]:
    """Deform test images ``index`` with ``model`` (loss power ``m``) and keep their traces (chapter 3's
    settings: :class:`DeformConfig` ``cpu`` preset, followed to convergence)."""
    dcfg = dcfg or DeformConfig.cpu()
    x = data.x_test[list(index)].to(model.device)  # (J, 784)
    res = deform(model, x, m, dcfg, trace=len(index), snapshot_every=1)
    return traces_from_result(res, index, data.y_test[list(index)].tolist(), max_frames)


def compute_explorer_traces(models: Mapping[int, DAM], loss_power: Mapping[int, int], data: Dataset,
                            cfg: ExplorerConfig, dcfg: DeformConfig | None = None) -> dict[int, list[ImageTrace]]:
    """The traces of ``cfg.test_indices`` for every model (``{n: [ImageTrace, ...]}``)."""
    index = cfg.test_indices(len(data.y_test))
    return {int(n): trace_images(models[n], loss_power[n], data, index, cfg.max_frames, dcfg) for n in models}


def _pad(rows: Sequence[np.ndarray], fill: float) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width, *rows[0].shape[1:]), fill, dtype=rows[0].dtype)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out


def save_explorer_traces(traces: Mapping[int, Sequence[ImageTrace]], cfg: ExplorerConfig, dcfg: DeformConfig,
                         wall: float, device: Any = "cpu", root: Path | None = None) -> dict[str, Any]:
    """Write the cache (frames as float16: the explorer only draws them) and register it in the manifest."""
    arrays: dict[str, np.ndarray] = {}
    for n, ts in traces.items():
        arrays[f"n{n}_frames"] = _pad([t.frames.astype(np.float16) for t in ts], np.nan)  # (J, S, 784)
        arrays[f"n{n}_steps"] = _pad([t.steps for t in ts], -1)  # (J, S)
        arrays[f"n{n}_log_c_top"] = _pad([t.log_c_top for t in ts], np.nan)  # (J, L)
        arrays[f"n{n}_log_c_second"] = _pad([t.log_c_second for t in ts], np.nan)
    payload = {"per_model": {str(n): [{"index": t.index, "label": t.label, "top": t.top, "second": t.second,
                                       "cross_step": t.cross_step, "n_log": len(t.log_c_top)} for t in ts]
                             for n, ts in traces.items()}}
    config = {"models": model_records(list(traces), root), "explorer": cfg.to_dict(), "deform": dcfg.to_dict()}
    return save_result(EXPLORER, "result-ch3-explorer", payload, arrays, config, wall, device, root)


def load_explorer_traces(root: Path | None = None, check_models: bool = True
                         ) -> tuple[dict[int, list[ImageTrace]], dict[str, Any]]:
    """The cached traces (``{n: [ImageTrace, ...]}``) and the cache's JSON document, SHA-256 verified and
    refused when stale (see module doc)."""
    doc, arrays = load_result(EXPLORER, root, check_models)
    assert arrays is not None
    traces: dict[int, list[ImageTrace]] = {}
    for key in sorted(doc["per_model"], key=int):
        recs = doc["per_model"][key]
        out = []
        for j, r in enumerate(recs):
            steps = arrays[f"n{key}_steps"][j]
            s = int((steps >= 0).sum())
            L = r["n_log"]
            top, second = arrays[f"n{key}_log_c_top"][j, :L], arrays[f"n{key}_log_c_second"][j, :L]
            out.append(ImageTrace(index=r["index"], label=r["label"], top=r["top"], second=r["second"],
                                  cross_step=r["cross_step"], steps=steps[:s].astype(np.int64),
                                  frames=arrays[f"n{key}_frames"][j, :s].astype(np.float32),
                                  log_c_top=top, log_c_second=second))
        traces[int(key)] = out
    return traces, doc


def recheck_explorer_traces(traces: Mapping[int, Sequence[ImageTrace]], doc: Mapping[str, Any], data: Dataset,
                            n_sample: int = 2, seed: int = 0, device: str | torch.device = "cpu",
                            root: Path | None = None) -> dict[str, float]:
    """Recompute ``n_sample`` random cached traces per model, one image at a time as the explorer's box does,
    with the committed models and the recorded configs, and compare at the steps both stored.

    Up to the crossing a deformation is stable: ``pre_*`` (frames, float16 storage ~2.4e-4; both objectives)
    must stay tiny, and top, second choice, label and crossing step must agree (``mismatches``). After it, on
    the way to convergence over hundreds of steps, float noise (another batch, another BLAS) can move the
    plateau test by some steps and the image a little: ``post_frame_max_abs`` and ``post_steps_differ``
    report that drift."""
    cfg, dcfg = ExplorerConfig(**doc["config"]["explorer"]), DeformConfig(**doc["config"]["deform"])
    gen = np.random.default_rng(seed)
    out = {"checked": 0, "mismatches": 0, "pre_frame_max_abs": 0.0, "pre_log_c_max_abs": 0.0,
           "post_frame_max_abs": 0.0, "post_steps_differ": 0}
    for n, ts in traces.items():
        model, entry = load_book_model(n, device, root)
        for j in gen.choice(len(ts), size=min(n_sample, len(ts)), replace=False):
            old = ts[int(j)]
            new = trace_images(model, int(entry["config"]["m"]), data, [old.index], cfg.max_frames, dcfg)[0]
            out["checked"] += 1
            if (new.cross_step, new.top, new.second, new.label) != (old.cross_step, old.top, old.second, old.label):
                out["mismatches"] += 1
                continue
            out["post_steps_differ"] += int(not np.array_equal(new.steps, old.steps))
            common, i_old, i_new = np.intersect1d(old.steps, new.steps, return_indices=True)
            diff = np.abs(old.frames[i_old] - new.frames[i_new]).max(axis=1)  # (common,)
            pre = common <= old.cross_step if old.cross_step >= 0 else np.ones_like(common, dtype=bool)
            out["pre_frame_max_abs"] = max(out["pre_frame_max_abs"], float(diff[pre].max()))
            if (~pre).any():
                out["post_frame_max_abs"] = max(out["post_frame_max_abs"], float(diff[~pre].max()))
            L = (old.cross_step if old.cross_step >= 0 else min(len(old.log_c_top), len(new.log_c_top)) - 1) + 1
            d = max(np.abs(new.log_c_top[:L] - old.log_c_top[:L]).max(),
                    np.abs(new.log_c_second[:L] - old.log_c_second[:L]).max())
            out["pre_log_c_max_abs"] = max(out["pre_log_c_max_abs"], float(d))
    return out


def committed_tracer(doc: Mapping[str, Any], device: str | torch.device = "cpu") -> Callable[[int, int], ImageTrace]:
    """``f(n, i)``: test image ``i`` deformed by the committed model for ``n`` with the configs recorded in the
    cache's ``doc`` (so it matches the cached traces). Models and MNIST are loaded on first use."""
    cfg, dcfg = ExplorerConfig(**doc["config"]["explorer"]), DeformConfig(**doc["config"]["deform"])
    loaded: dict[Any, Any] = {}

    def trace(n: int, i: int) -> ImageTrace:
        if "data" not in loaded:
            loaded["data"] = load_mnist()
        if n not in loaded:
            loaded[n] = load_book_model(n, device)
        model, entry = loaded[n]
        return trace_images(model, int(entry["config"]["m"]), loaded["data"], [i], cfg.max_frames, dcfg)[0]

    return trace


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Recompute the cached traces of chapter 3's explorer.")
    ap.add_argument("--profile", default="cpu", choices=("paper", "cpu", "smoke"))
    args = ap.parse_args(argv)
    cfg, dcfg = ExplorerConfig.preset(args.profile), DeformConfig.preset("cpu")
    data = load_mnist()
    t0 = time.perf_counter()
    cm = obtain_models(EXPLORER_N, "cpu", data)
    traces = compute_explorer_traces(cm.models, cm.loss_power, data, cfg, dcfg)
    e = save_explorer_traces(traces, cfg, dcfg, time.perf_counter() - t0)
    print(f"{e['path']}: {cfg.n_images} images x {len(traces)} models in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
