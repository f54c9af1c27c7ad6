"""Chapter 2's rubbish images (Fig. 3 and every table after it), cached in ``artifacts/results/ch2_rubbish``.

The descents of eq. (5) run hundreds of float32 steps, and a BLAS library adds in an order of its own: on another
CPU the images end a few ulps apart, and now and then one of them stops at a plateau one step earlier. A chapter
that descended under nbval showed other numbers on another machine, so chapter 2 loads its descents from here,
made once by the shipped code from the committed models (book models and the two ablations of chapter 1), with
the name and SHA-256 of every model, and refuses them once a model changes. ``recompute=True`` descends again;
``tests/test_rubbish_cache.py`` re-runs every model's first noise image from its cached start and compares.

    python -m dam_utils.rubbish_cache          # 4 noise images x 10 classes per model, cpu preset, seed 0
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifacts import entry, load_book_model, load_model, read_manifest
from .model import DAM
from .results_cache import StaleResultError, load_result, save_result
from .rubbish import RubbishConfig, RubbishResult, generate_rubbish

CH2 = "ch2_rubbish"
BOOK = "book"
#: chapter 1's ablations, ``manifest["ablation_models"][table]``, whose rubbish chapter 2 compares.
ABLATIONS = ("p=0.9", "p=0.6, freeze_idle")
N_VALUES = (2, 3, 20, 30)
_TENSORS = ("images", "start", "target", "steps", "status", "stalled", "log_objective", "start_log_objective",
            "vanishing", "vanishing_at_start", "underflow", "zero_gradient")


def _record(table: str, n: int, root: Path | None) -> dict[str, Any]:
    manifest = read_manifest(root)
    name = manifest["book_models"][str(n)] if table == BOOK else manifest["ablation_models"][table][str(n)]
    return {"table": table, "n": n, "name": name, "sha256": entry(name, root)["sha256"]}


def models(n_values: Iterable[int] = N_VALUES, tables: Sequence[str] = (BOOK, *ABLATIONS),
           device: torch.device | str = "cpu", root: Path | None = None) -> dict[tuple[str, int], tuple[DAM, int]]:
    """The committed models chapter 2 descends on, keyed ``(table, n)``, with their loss power m."""
    out = {}
    for n in n_values:
        for table in tables:
            if table != BOOK and str(n) not in read_manifest(root).get("ablation_models", {}).get(table, {}):
                continue
            model, e = (load_book_model(n, device, root) if table == BOOK
                        else load_model(_record(table, n, root)["name"], device, root))
            out[table, int(n)] = (model, int(e["config"]["m"]))
    return out


def compute(n_seeds: int = 4, profile: str = "cpu", seed: int = 0, device: torch.device | str = "cpu",
            root: Path | None = None) -> dict[str, Any]:
    """Descend with every committed model of chapter 2 and store the cache; returns its manifest entry."""
    t0 = time.perf_counter()
    rcfg = RubbishConfig.preset(profile)
    runs = {key: generate_rubbish(model, m, n_seeds, rcfg, seed=seed)
            for key, (model, m) in models(device=device, root=root).items()}
    arrays, keys = {}, []
    for k, ((table, n), r) in enumerate(runs.items()):
        keys.append({"id": f"k{k}", **_record(table, n, root), "m": r.m, "wall_time_s": round(r.wall_time_s, 1)})
        arrays.update({f"k{k}_{f}": getattr(r, f).cpu().numpy() for f in _TENSORS})
    config = {"rubbish": rcfg.to_dict(), "n_seeds": n_seeds, "seed": seed, "profile": profile, "runs": keys,
              "models": {}}  # the models are checked per run (below), not as book models by n
    return save_result(CH2, "ch2-rubbish", {}, arrays, config, time.perf_counter() - t0, device, root)


def check_models(doc: dict[str, Any], root: Path | None = None) -> None:
    """:class:`StaleResultError` unless every model a run was made with is still the committed one."""
    problems = []
    for run in doc["config"]["runs"]:
        try:
            now = _record(run["table"], run["n"], root)
        except KeyError:
            problems.append(f"{run['table']} n={run['n']}: no committed model any more")
            continue
        if (now["name"], now["sha256"]) != (run["name"], run["sha256"]):
            problems.append(f"{run['table']} n={run['n']}: made with {run['name']} ({run['sha256'][:12]}...), "
                            f"the committed model is {now['name']} ({now['sha256'][:12]}...)")
    if problems:
        raise StaleResultError(f"the cached {CH2} was made with other models ({'; '.join(problems)}): "
                               "recompute it with `python -m dam_utils.rubbish_cache`, or run chapter 2 with "
                               "recompute=True")


def load(root: Path | None = None) -> tuple[dict[tuple[str, int], RubbishResult], dict[str, Any]]:
    """The cached descents keyed ``(table, n)`` and the cache's document (config, provenance)."""
    doc, arrays = load_result(CH2, root, check_models=False)
    check_models(doc, root)
    rcfg = RubbishConfig(**doc["config"]["rubbish"])
    out = {}
    for run in doc["config"]["runs"]:
        t = {f: torch.from_numpy(np.asarray(arrays[f"{run['id']}_{f}"])) for f in _TENSORS}
        out[run["table"], run["n"]] = RubbishResult(**t, config=rcfg, m=run["m"], wall_time_s=run["wall_time_s"])
    return out, doc


def covers(doc: dict[str, Any], n_values: Iterable[int], n_seeds: int, profile: str, seed: int | None,
           trained_here: bool) -> bool:
    """Whether a chapter run with these parameters would descend exactly what the cache holds."""
    cfg = doc["config"]
    have = {run["n"] for run in cfg["runs"] if run["table"] == BOOK}
    return (not trained_here and profile == cfg["profile"] and (seed or 0) == cfg["seed"]
            and n_seeds == cfg["n_seeds"] and set(n_values) <= have)


def recheck(run: RubbishResult, model: DAM, images: int) -> dict[str, Any]:
    """Descend the first ``images`` images again from their cached starts; per image the largest pixel difference
    and whether the stopping status agrees."""
    new = generate_rubbish(model, run.m, 1, run.config, start=run.start[:images])
    return {"max_abs": (new.images - run.images[:images]).abs().amax(1),
            "same_status": new.status == run.status[:images]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Cache chapter 2's rubbish images (artifacts/results/ch2_rubbish).")
    ap.add_argument("--n-seeds", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    e = compute(args.n_seeds, device=args.device)
    print(f"{e['path']}: {len(e['config']['runs'])} models, {e['wall_time_s']} s")


if __name__ == "__main__":
    main()
