"""Chapter 4's results: load them from the cache, or compute them; ``python -m dam_utils.reproduce`` caches them.

The end of the import graph for Figs. 5-7: it obtains the models (:func:`dam_utils.book_models.obtain_models`),
runs the experiments (:func:`dam_utils.transfer.compute_results`) and reads or writes the cache
(:mod:`dam_utils.results_cache`).

* :func:`chapter_results` is what the chapter calls: the cached results by default, or results computed
  right there (``recompute``, or the ``smoke`` profile). The cache covers the book's powers; for other powers
  it returns what it covers and lists the rest in ``missing`` (the chapter then says "not computed").
* :func:`reproduce` (``make reproduce``) recomputes the results with the committed models and caches them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .artifacts import ArtifactError, book_model_name, entry
from .book_models import obtain_models
from .data import load_mnist
from .params import PROFILES
from .results_cache import (
    load_confidence_results,
    load_rubbish_results,
    load_transfer_results,
    model_records,
    save_confidence_results,
    save_rubbish_results,
    save_transfer_results,
)
from .transfer import CHAPTER_SIZES, ChapterResults, compute_results

__all__ = ["chapter_results", "main", "reproduce"]


def chapter_results(
    n_values: Sequence[int],
    profile: str,
    recompute: bool,
    data: Any,
    n_images: int | None = None,
    n_per_class: int | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    K: int | None = None,
    epochs: int | None = None,
) -> ChapterResults:
    """Figs. 5-7 for chapter 4: loaded from ``artifacts/results/`` (default), or computed here (``recompute``
    or profile ``smoke``).

    Loading: the cached results restricted to the powers of ``n_values`` they cover; the others are listed in
    ``missing`` (an :class:`~dam_utils.artifacts.ArtifactError` says what to run when none is covered).
    Computing: the models come from :func:`~dam_utils.book_models.obtain_models` (``K``, ``epochs``, ``seed``
    override the training preset), attack presets follow ``profile``, ``seed`` also draws the rubbish noise;
    ``n_images`` and ``n_per_class`` default to :data:`~dam_utils.transfer.CHAPTER_SIZES`. Nothing is written.
    """
    n_values = [int(n) for n in n_values]
    if not recompute and profile != "smoke":
        r5, r6, r7 = load_transfer_results(), load_rubbish_results(), load_confidence_results()
        have = [n for n in n_values if n in r5.n_values and n in r6.n_values and n in r7]
        if not have:
            raise ArtifactError(
                f"the cached results have n = {r5.n_values}, none of {n_values}: run the chapter with "
                "recompute=True (see README.md, 'Re-running with other n').")
        for n in have:  # a profile never silently shows another profile's results
            wanted = book_model_name(n, profile=profile)  # raises, naming the command, if none is committed
            used = r5.config["models"][str(n)]["name"]
            if used != wanted:
                raise ArtifactError(
                    f"the cached results for n={n} were computed with {used}, not with the committed {profile!r} "
                    f"model {wanted}: run `python -m dam_utils.reproduce --profile {profile}` first, or the "
                    "chapter with recompute=True.")
        entries = {n: entry(r5.config["models"][str(n)]["name"]) for n in have}
        return ChapterResults(r5.select(have), r6.select(have), {n: r7[n] for n in have},
                              "loaded from artifacts/results/", entries,
                              missing=[n for n in n_values if n not in have])
    sizes = CHAPTER_SIZES[profile]
    got = obtain_models(n_values, profile, data, device=device, recompute=recompute, K=K, epochs=epochs, seed=seed)
    res = compute_results(got.models, got.loss_power, data, n_images=n_images or sizes["n_images"],
                          n_per_class=n_per_class or sizes["n_per_class"], profile=profile, seed=seed,
                          device=device)
    res.source, res.entries = "computed in this notebook", dict(got.entries)
    return res


def reproduce(
    figs: Sequence[int] = (5, 6, 7),
    n_values: Sequence[int] = (2, 3, 20, 30),
    n_images: int = CHAPTER_SIZES["cpu"]["n_images"],
    n_per_class: int = CHAPTER_SIZES["cpu"]["n_per_class"],
    profile: str = "cpu",
    device: str = "cpu",
    seed: int = 0,
    root: Path | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Recompute Figs. 5, 6, 7 (those in ``figs``) with the committed models of ``profile`` and cache them;
    returns the wall time per figure (seconds)."""
    data = load_mnist()
    got = obtain_models(list(n_values), profile, data, device=device)
    records = model_records(n_values, root, profile)
    t0 = time.perf_counter()
    res = compute_results(got.models, got.loss_power, data, figs=figs, n_images=n_images, n_per_class=n_per_class,
                          profile=profile, seed=seed, device=device, progress=progress)
    walls = {"fig7": float(next(iter(res.fig7.values()))["wall_time_s"])}
    if 7 in figs:
        save_confidence_results(res.fig7, walls["fig7"], records, device, root)
    if res.fig5 is not None:
        save_transfer_results(res.fig5, records, device, root)
        walls["fig5"] = res.fig5.wall_time_s
    if res.fig6 is not None:
        save_rubbish_results(res.fig6, records, device, root)
        walls["fig6"] = res.fig6.wall_time_s
    walls["total"] = time.perf_counter() - t0
    return walls


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Recompute and cache the results of chapter 4 (Figs. 5, 6, 7).")
    ap.add_argument("--fig", type=int, nargs="+", default=[5, 6, 7], choices=[5, 6, 7])
    ap.add_argument("--n", type=int, nargs="+", default=[2, 3, 20, 30], help="powers n (book models)")
    ap.add_argument("--n-images", type=int, default=CHAPTER_SIZES["cpu"]["n_images"],
                    help="test images deformed per model (Fig. 5)")
    ap.add_argument("--n-per-class", type=int, default=CHAPTER_SIZES["cpu"]["n_per_class"],
                    help="rubbish images per class per model (Fig. 6)")
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES), help="models and attack presets")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    walls = reproduce(args.fig, args.n, args.n_images, args.n_per_class, args.profile, args.device, args.seed)
    for k, v in walls.items():
        print(f"{k}: {v:.0f} s")


if __name__ == "__main__":
    main()
