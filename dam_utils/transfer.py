"""Transferability between DAM_n models (Krotov & Hopfield 2018, section 5): Figs. 5 and 6, cached.

* **Fig. 5, adversarial transfer** (:func:`adversarial_transfer`): every generating model deforms the
  first ``n_images`` MNIST test images along ``-grad C^second`` to one step behind its decision boundary
  (:func:`dam_utils.attacks.deform`, the ``behind`` image); every model then classifies every set. The
  error is the share of images whose predicted label differs from the *clean image's true label* (as in
  the paper, whose footnote 3 explains why the diagonal is ~99 %, not 100 %). Images whose deformation
  never crossed the boundary (failures) stay in the set with their last iterate, as the paper's sets
  have all 10000 images; they are counted, and :meth:`TransferResult.table` can leave them out.
* **Fig. 6, rubbish transfer** (:func:`rubbish_transfer`): every generating model deforms Gaussian noise
  into ``n_per_class`` images of each class (:func:`dam_utils.attacks.generate_rubbish`, one noise image
  per rubbish image); every model reports its mean confidence Z (:mod:`dam_utils.confidence`) on every
  set, with the paper's single ``beta_sm = 3.2`` and with each tested model's own fitted ``beta_sm``.
* **Fig. 7** lives in :mod:`dam_utils.confidence`; :func:`compute_and_save` caches it here too.

Cache (``artifacts/results/``): ``fig5_transfer.json`` / ``fig6_rubbish.json`` / ``fig7_confidence.json``
hold the tables, the configuration (attack config, image counts, seed, and each model's artifact name and
SHA-256), :func:`~dam_utils.provenance.environment_info` and the wall time; ``fig5_transfer.npz`` and
``fig6_rubbish.npz`` hold the per-image results (labels predicted by every model, crossings, confidences)
and a few sample images. All are written atomically and registered in ``artifacts/manifest.json``. The
loaders verify every SHA-256 and refuse a cache made with other models than the current book models
(:class:`StaleResultError`): recompute it with ``python -m dam_utils.transfer`` (``make reproduce``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifacts import ArtifactError, read_manifest, register, verified_path
from .atomic import atomic_write_bytes, atomic_write_text
from .attacks import DeformConfig, RubbishConfig, deform, generate_rubbish
from .model import DAM
from .paths import artifacts_dir
from .provenance import environment_info

__all__ = [
    "CHAPTER_SIZES",
    "FIG5",
    "FIG6",
    "FIG7",
    "RESULTS_FORMAT",
    "ChapterResults",
    "ResultMissingError",
    "RubbishTransferResult",
    "StaleResultError",
    "TransferResult",
    "adversarial_transfer",
    "chapter_results",
    "check_fresh",
    "compute_and_save",
    "fig5_rows",
    "fig6_rows",
    "load_confidence_results",
    "load_rubbish_results",
    "load_transfer_results",
    "model_records",
    "obtain_models",
    "plot_rubbish_samples",
    "plot_transfer_samples",
    "recheck_transfer",
    "rubbish_transfer",
    "save_confidence_results",
    "save_rubbish_results",
    "save_transfer_results",
    "slides_rows",
]

RESULTS_FORMAT = "dam-book-results/1"
#: Artifact names (manifest keys) of the cached results; the files are ``results/<name>.json`` / ``.npz``.
FIG5, FIG6, FIG7 = "fig5_transfer", "fig6_rubbish", "fig7_confidence"


class ResultMissingError(ArtifactError):
    """A cached result is not in the manifest (not computed yet)."""


class StaleResultError(ArtifactError):
    """A cached result was computed with other models than the current book models."""


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------


def model_records(n_values: Sequence[int], root: Path | None = None) -> dict[str, dict[str, str]]:
    """``{str(n): {"name", "sha256"}}`` of the current book models (what a cache is checked against)."""
    from .artifacts import book_model_name, entry

    out = {}
    for n in n_values:
        name = book_model_name(int(n), root)
        out[str(int(n))] = {"name": name, "sha256": entry(name, root)["sha256"]}
    return out


def obtain_models(
    n_values: Sequence[int],
    profile: str,
    data: Any,
    device: torch.device | str = "cpu",
    train_missing: bool = True,
    train_all: bool = False,
    **overrides: Any,
) -> tuple[dict[int, DAM], dict[int, int], dict[int, dict[str, Any]]]:
    """The models of a chapter: ``(models, m, entries)`` keyed by n.

    A book model (``artifacts/``) is loaded when there is one and ``train_all`` is False; otherwise the model
    is trained here with ``TrainConfig.preset(profile, n, **overrides)`` (not saved), if ``train_missing``
    (else the :class:`~dam_utils.artifacts.ArtifactError` naming the training command is raised).
    ``m`` is each model's loss power (needed by the attacks); ``entries`` its manifest entry (trained
    models: config, epochs, wall time, environment, no sha256).
    """
    from .artifacts import load_book_model
    from .train import TrainConfig, train

    names = read_manifest()["book_models"]
    models, ms, entries = {}, {}, {}
    for n in n_values:
        n = int(n)
        if str(n) in names and not train_all:
            models[n], entries[n] = load_book_model(n, device=device)
            ms[n] = int(entries[n]["config"]["m"])
            continue
        if not train_missing:
            from .artifacts import book_model_name

            book_model_name(n)  # raises with the training command
        cfg = TrainConfig.preset(profile, n, **overrides)
        res = train(cfg, data, device=device, progress=False)
        models[n], ms[n] = res.model, cfg.m
        entries[n] = {"config": cfg.to_dict(), "epochs": len(res.history), "wall_time_s": res.wall_time_s,
                      "environment": res.environment}
    return models, ms, entries


def _labels(model: DAM, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    return model.predict(x, batch_size=batch_size).cpu().numpy().astype(np.int8)


# ---------------------------------------------------------------------------------------------------------
# Fig. 5
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TransferResult:
    """Fig. 5. Index ``g`` runs over the generating models, ``t`` over the tested ones (both ``n_values``).

    Per image (``N = len(indices)``, test-set positions): ``labels`` (N,) true classes;
    ``predictions[g, t]`` (N,) the label model t gives to generator g's behind image; ``clean_predictions[t]``
    (N,) model t's label of the clean image; ``top[g]``, ``second[g]`` (N,) generator g's first and second
    choice of the clean image; ``crossed[g]`` (N,) whether its deformation crossed the boundary. Samples:
    ``samples[g, s]`` the behind image of test image ``indices[sample_positions[s]]``.
    """

    n_values: list[int]
    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray  # (G, T, N) int8
    clean_predictions: np.ndarray  # (T, N) int8
    top: np.ndarray  # (G, N) int8
    second: np.ndarray  # (G, N) int8
    crossed: np.ndarray  # (G, N) bool
    sample_positions: np.ndarray  # (S,)
    samples: np.ndarray  # (G, S, 784) float32
    clean_error_full: dict[int, float]  # percent, whole test set
    summaries: dict[int, dict[str, Any]]  # deform summary per generator
    config: dict[str, Any]
    wall_time_s: float
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.indices)

    def table(self, crossed_only: bool = False) -> np.ndarray:
        """Error (percent) of model t on generator g's set, (G, T); ``crossed_only`` leaves out the images whose
        deformation by g failed (NaN if none crossed)."""
        wrong = self.predictions != self.labels[None, None, :]  # (G, T, N)
        if not crossed_only:
            return 100.0 * wrong.mean(2)
        mask = self.crossed[:, None, :]
        cnt = mask.sum(2)
        with np.errstate(invalid="ignore"):
            return np.where(cnt > 0, 100.0 * (wrong & mask).sum(2) / np.maximum(cnt, 1), np.nan)

    def clean_error_subset(self) -> dict[int, float]:
        """Clean error (percent) of each model on the ``n_images`` used here."""
        return {n: 100.0 * float((self.clean_predictions[t] != self.labels).mean())
                for t, n in enumerate(self.n_values)}

    def failures(self) -> dict[int, int]:
        return {n: int((~self.crossed[g]).sum()) for g, n in enumerate(self.n_values)}

    def cell(self, gen: int, test: int, crossed_only: bool = False) -> float:
        return float(self.table(crossed_only)[self.n_values.index(gen), self.n_values.index(test)])

    def select(self, n_values: Sequence[int]) -> TransferResult:
        """The same result restricted to (and ordered by) ``n_values`` (each must be in ``self.n_values``)."""
        idx = [self.n_values.index(int(n)) for n in n_values]
        return TransferResult([int(n) for n in n_values], self.indices, self.labels,
                              self.predictions[np.ix_(idx, idx)], self.clean_predictions[idx], self.top[idx],
                              self.second[idx], self.crossed[idx], self.sample_positions, self.samples[idx],
                              {int(n): self.clean_error_full[int(n)] for n in n_values},
                              {int(n): self.summaries[int(n)] for n in n_values}, self.config, self.wall_time_s,
                              self.environment)

    def second_is_truth(self) -> dict[int, float]:
        """Percent of images whose generator's second choice is the true label (footnote 3: ~1 %)."""
        return {n: 100.0 * float((self.second[g] == self.labels).mean()) for g, n in enumerate(self.n_values)}


def adversarial_transfer(
    models: Mapping[int, DAM],
    data: Any,
    n_images: int,
    deform_cfg: DeformConfig | None = None,
    *,
    m: Mapping[int, int],
    n_samples: int = 10,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> TransferResult:
    """Fig. 5 on the first ``n_images`` test images: deform with every model, classify with every model.

    ``m``: each model's loss power (the attack's objective, eq. (4)). ``deform_cfg`` defaults to the ``cpu``
    preset; ``to_convergence`` is forced off (only the crossing matters). ``n_samples``: behind images kept
    per generator for display (the first ones). Runs on ``device`` (default: the first model's).
    """
    t_all = time.perf_counter()
    cfg = (deform_cfg or DeformConfig.cpu()).replace(to_convergence=False)
    n_values = [int(n) for n in models]
    dev = torch.device(device) if device is not None else next(iter(models.values())).device
    N = min(int(n_images), len(data.y_test))
    x = data.x_test[:N].to(dev)
    labels = data.y_test[:N].cpu().numpy().astype(np.int8)
    G = len(n_values)
    preds = np.zeros((G, G, N), np.int8)
    top = np.zeros((G, N), np.int8)
    second = np.zeros((G, N), np.int8)
    crossed = np.zeros((G, N), bool)
    S = min(n_samples, N)
    samples = np.zeros((G, S, 784), np.float32)
    summaries: dict[int, dict[str, Any]] = {}
    for g, n in enumerate(n_values):
        cpu0 = time.process_time()
        res = deform(models[n], x, m[n], cfg, progress=progress)
        behind = res.behind.to(dev)
        for t, nt in enumerate(n_values):
            preds[g, t] = _labels(models[nt], behind)
        top[g], second[g] = res.top.numpy(), res.second.numpy()
        crossed[g] = res.crossed.numpy()
        samples[g] = res.behind[:S].float().numpy()
        summaries[n] = res.summary()
        if progress:
            print(f"fig5: generator n={n} done ({res.wall_time_s:.1f} s wall, {time.process_time() - cpu0:.1f} s CPU)",
                  flush=True)
    clean = np.stack([_labels(models[n], x) for n in n_values])
    full = {n: models[n].error_rate(data.x_test.to(dev), data.y_test) for n in n_values}
    config = {"deform": cfg.to_dict(), "n_images": N, "images": f"first {N} MNIST test images",
              "n_values": n_values, "m": {str(k): int(v) for k, v in m.items() if k in models}}
    return TransferResult(n_values, np.arange(N), labels, preds, clean, top, second, crossed, np.arange(S),
                          samples, full, summaries, config, time.perf_counter() - t_all, environment_info(dev))


def recheck_transfer(
    result: TransferResult,
    models: Mapping[int, DAM],
    data: Any,
    n_sample: int = 200,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Recompute ``n_sample`` randomly chosen images (``seed``) of a cached Fig. 5 from scratch with the code
    as it is now, and compare per image with the cache. Returns the chosen test indices, the number of
    (generator, tested, image) labels compared and how many disagree, plus disagreements in crossings
    and second choices."""
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.choice(result.n_images, size=min(n_sample, result.n_images), replace=False))
    dev = torch.device(device) if device is not None else next(iter(models.values())).device
    x = data.x_test[torch.as_tensor(result.indices[pos])].to(dev)
    cfg = DeformConfig(**result.config["deform"])
    m = {int(k): v for k, v in result.config["m"].items()}
    pred_bad = cross_bad = second_bad = 0
    per_cell: dict[str, int] = {}
    for g, n in enumerate(result.n_values):
        res = deform(models[n], x, m[n], cfg)
        behind = res.behind.to(dev)
        cross_bad += int((res.crossed.numpy() != result.crossed[g, pos]).sum())
        second_bad += int((res.second.numpy() != result.second[g, pos]).sum())
        for t, nt in enumerate(result.n_values):
            bad = int((_labels(models[nt], behind) != result.predictions[g, t, pos]).sum())
            per_cell[f"{n}->{nt}"] = bad
            pred_bad += bad
    compared = len(pos) * len(result.n_values) ** 2
    return {"indices": result.indices[pos].tolist(), "compared": compared, "disagree": pred_bad,
            "disagree_fraction": pred_bad / compared, "per_cell": per_cell,
            "crossed_disagree": cross_bad, "second_disagree": second_bad}


# ---------------------------------------------------------------------------------------------------------
# Fig. 6
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RubbishTransferResult:
    """Fig. 6. ``targets`` (N,) the class each rubbish image was made for (image i: class i % 10);
    ``predictions[g, t]`` (N,) model t's label of generator g's image i; ``z_single[g, t]`` / ``z_own[g, t]``
    (N,) its confidence with ``beta_single`` / with model t's own ``beta_own[t]``. ``samples[g]``: the first
    ``samples_per_class`` images of each class (targets ``sample_targets``)."""

    n_values: list[int]
    n_per_class: int
    beta_single: float
    beta_own: dict[int, float]
    targets: np.ndarray  # (N,)
    predictions: np.ndarray  # (G, T, N) int8
    z_single: np.ndarray  # (G, T, N) float32
    z_own: np.ndarray  # (G, T, N) float32
    status: np.ndarray  # (G, N) int8
    samples: np.ndarray  # (G, S, 784) float32
    sample_targets: np.ndarray  # (S,)
    summaries: dict[int, dict[str, Any]]
    config: dict[str, Any]
    wall_time_s: float
    environment: dict[str, Any] = field(default_factory=dict)

    def mean_confidence(self, own: bool = False) -> np.ndarray:
        """Mean confidence (percent), (G, T)."""
        return 100.0 * (self.z_own if own else self.z_single).astype(np.float64).mean(2)

    def target_rate(self) -> np.ndarray:
        """Percent of each set that the tested model labels as the class it was made for, (G, T)."""
        return 100.0 * (self.predictions == self.targets[None, None, :]).mean(2)

    def cell(self, gen: int, test: int, own: bool = False) -> float:
        return float(self.mean_confidence(own)[self.n_values.index(gen), self.n_values.index(test)])

    def select(self, n_values: Sequence[int]) -> RubbishTransferResult:
        """The same result restricted to (and ordered by) ``n_values``."""
        idx = [self.n_values.index(int(n)) for n in n_values]
        ix = np.ix_(idx, idx)
        return RubbishTransferResult([int(n) for n in n_values], self.n_per_class, self.beta_single,
                                     {int(n): self.beta_own[int(n)] for n in n_values}, self.targets,
                                     self.predictions[ix], self.z_single[ix], self.z_own[ix], self.status[idx],
                                     self.samples[idx], self.sample_targets,
                                     {int(n): self.summaries[int(n)] for n in n_values}, self.config,
                                     self.wall_time_s, self.environment)


def rubbish_transfer(
    models: Mapping[int, DAM],
    n_per_class: int,
    rubbish_cfg: RubbishConfig | None = None,
    *,
    m: Mapping[int, int],
    beta_own: Mapping[int, float],
    beta_single: float | None = None,
    seed: int = 0,
    samples_per_class: int = 3,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> RubbishTransferResult:
    """Fig. 6: ``n_per_class`` rubbish images per class from every model, mean confidence of every model.

    Each rubbish image starts from its own noise image (``shared_noise`` is forced off, as in the paper's
    data set); every generator starts from the same noise (``seed``), so the rows differ only by the model.
    ``beta_own``: each tested model's fitted slope (:func:`dam_utils.confidence.fit_beta_sm`);
    ``beta_single`` defaults to the paper's 3.2.
    """
    from .confidence import confidence_np
    from .paper import BETA_SM_SINGLE

    t_all = time.perf_counter()
    beta_single = BETA_SM_SINGLE if beta_single is None else float(beta_single)
    cfg = (rubbish_cfg or RubbishConfig.cpu()).replace(shared_noise=False)
    n_values = [int(n) for n in models]
    dev = torch.device(device) if device is not None else next(iter(models.values())).device
    G, N = len(n_values), 10 * int(n_per_class)
    preds = np.zeros((G, G, N), np.int8)
    zs = np.zeros((G, G, N), np.float32)
    zo = np.zeros((G, G, N), np.float32)
    status = np.zeros((G, N), np.int8)
    k = min(samples_per_class, n_per_class)
    sample_idx = np.arange(10 * k)  # image i targets i % 10: the first 10 k images are k of each class
    samples = np.zeros((G, len(sample_idx), 784), np.float32)
    summaries = {}
    targets = np.arange(N) % 10
    for g, n in enumerate(n_values):
        cpu0 = time.process_time()
        res = generate_rubbish(models[n], m[n], n_per_class, cfg, seed=seed, device=dev)
        imgs = res.images.to(dev)
        for t, nt in enumerate(n_values):
            y = models[nt].predict_outputs(imgs).double().cpu().numpy()
            preds[g, t] = y.argmax(1)
            zs[g, t] = confidence_np(y, beta_single)
            zo[g, t] = confidence_np(y, float(beta_own[nt]))
        status[g] = res.status.numpy()
        samples[g] = res.images[sample_idx].float().numpy()
        summaries[n] = res.summary()
        if progress:
            print(f"fig6: generator n={n} done ({res.wall_time_s:.1f} s wall, {time.process_time() - cpu0:.1f} s CPU)",
                  flush=True)
    config = {"rubbish": cfg.to_dict(), "n_per_class": int(n_per_class), "seed": int(seed),
              "n_values": n_values, "m": {str(k_): int(v) for k_, v in m.items() if k_ in models},
              "beta_single": beta_single, "beta_own": {str(k_): float(v) for k_, v in beta_own.items()}}
    return RubbishTransferResult(n_values, int(n_per_class), beta_single, {int(k_): float(v) for k_, v in
                                 beta_own.items()}, targets, preds, zs, zo, status, samples, targets[sample_idx],
                                 summaries, config, time.perf_counter() - t_all, environment_info(dev))


# ---------------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------------


def _paths(name: str, root: Path) -> tuple[Path, Path]:
    return root / "results" / f"{name}.json", root / "results" / f"{name}.npz"


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def _save(name: str, kind: str, payload: dict[str, Any], arrays: dict[str, np.ndarray] | None,
          config: dict[str, Any], wall: float, device: Any, root: Path | None) -> dict[str, Any]:
    root = root or artifacts_dir()
    jpath, npath = _paths(name, root)
    env = environment_info(device)
    if arrays is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(npath, buf.getvalue())
        register(name + ".arrays", npath, {"kind": kind + "-arrays", "result": name}, root)
    doc = {"format": RESULTS_FORMAT, "kind": kind, "config": config, "environment": env,
           "wall_time_s": round(float(wall), 1), **payload}
    atomic_write_text(jpath, json.dumps(_clean(doc), indent=1, sort_keys=True) + "\n")
    return register(name, jpath, {"kind": kind, "config": _clean(config), "environment": env,
                                  "wall_time_s": round(float(wall), 1),
                                  **({"arrays": name + ".arrays"} if arrays is not None else {})}, root)


def check_fresh(doc_models: Mapping[str, Mapping[str, str]], name: str, root: Path | None = None) -> None:
    """Raise :class:`StaleResultError` unless every model recorded in a cache is still the book model for
    its n with the same SHA-256."""
    manifest = read_manifest(root)
    problems = []
    for n, rec in doc_models.items():
        cur = manifest["book_models"].get(str(n))
        if cur is None:
            problems.append(f"n={n}: no book model any more")
        elif cur != rec["name"]:
            problems.append(f"n={n}: computed with {rec['name']}, the book model is now {cur}")
        elif manifest["artifacts"].get(cur, {}).get("sha256") != rec["sha256"]:
            problems.append(f"n={n}: the weights of {cur} changed (sha256 {rec['sha256'][:12]}... recorded)")
    if problems:
        raise StaleResultError(
            f"the cached {name} was computed with other models than the current book models ("
            + "; ".join(problems) + "). Recompute it: `python -m dam_utils.transfer` (or `make reproduce`), "
            "or run the chapter with recompute=True.")


def _load(name: str, root: Path | None, check_models: bool) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    root = root or artifacts_dir()
    if name not in read_manifest(root)["artifacts"]:
        raise ResultMissingError(
            f"no cached {name} in {root / 'manifest.json'}: compute it with `python -m dam_utils.transfer` "
            "(`make reproduce`), or run the chapter with recompute=True.")
    jpath, e = verified_path(name, root)
    doc = json.loads(jpath.read_text())
    if doc.get("format") != RESULTS_FORMAT:
        raise ArtifactError(f"{jpath} is not a {RESULTS_FORMAT} file")
    if check_models:
        check_fresh(doc["config"]["models"], name, root)
    arrays = None
    if "arrays" in e:
        npath, _ = verified_path(e["arrays"], root)
        with np.load(npath) as z:
            arrays = {k: z[k] for k in z.files}
    return doc, arrays


def save_transfer_results(result: TransferResult, models: Mapping[str, Mapping[str, str]] | None = None,
                          device: Any = "cpu", root: Path | None = None) -> dict[str, Any]:
    """Write ``results/fig5_transfer.json`` + ``.npz`` atomically and register them. ``models``:
    :func:`model_records` of the models used (default: the current book models of ``result.n_values``)."""
    models = models or model_records(result.n_values, root)
    config = {**result.config, "models": dict(models)}
    table, table_c = result.table(), result.table(crossed_only=True)
    payload = {
        "n_values": result.n_values,
        "table": {str(g): {str(t): table[i, j] for j, t in enumerate(result.n_values)}
                  for i, g in enumerate(result.n_values)},
        "table_crossed_only": {str(g): {str(t): table_c[i, j] for j, t in enumerate(result.n_values)}
                               for i, g in enumerate(result.n_values)},
        "clean_error_full": {str(k): v for k, v in result.clean_error_full.items()},
        "clean_error_subset": {str(k): v for k, v in result.clean_error_subset().items()},
        "failures": {str(k): v for k, v in result.failures().items()},
        "second_is_truth": {str(k): v for k, v in result.second_is_truth().items()},
        "summaries": {str(k): v for k, v in result.summaries.items()},
    }
    arrays = {"indices": result.indices.astype(np.int32), "labels": result.labels,
              "predictions": result.predictions, "clean_predictions": result.clean_predictions,
              "top": result.top, "second": result.second, "crossed": result.crossed,
              "sample_positions": result.sample_positions.astype(np.int32),
              "samples": result.samples.astype(np.float32)}
    return _save(FIG5, "result-fig5", payload, arrays, config, result.wall_time_s, device, root)


def load_transfer_results(root: Path | None = None, check_models: bool = True) -> TransferResult:
    """The cached Fig. 5 (sha256-verified; refused if the book models changed since)."""
    doc, a = _load(FIG5, root, check_models)
    assert a is not None
    n_values = [int(n) for n in doc["n_values"]]
    return TransferResult(
        n_values, a["indices"], a["labels"], a["predictions"], a["clean_predictions"], a["top"], a["second"],
        a["crossed"], a["sample_positions"], a["samples"],
        {int(k): v for k, v in doc["clean_error_full"].items()},
        {int(k): v for k, v in doc["summaries"].items()}, doc["config"], doc["wall_time_s"], doc["environment"])


def save_rubbish_results(result: RubbishTransferResult, models: Mapping[str, Mapping[str, str]] | None = None,
                         device: Any = "cpu", root: Path | None = None) -> dict[str, Any]:
    """Write ``results/fig6_rubbish.json`` + ``.npz`` atomically and register them."""
    models = models or model_records(result.n_values, root)
    config = {**result.config, "models": dict(models)}
    mc, mo, tr = result.mean_confidence(), result.mean_confidence(own=True), result.target_rate()

    def grid(a: np.ndarray) -> dict[str, dict[str, float]]:
        return {str(g): {str(t): a[i, j] for j, t in enumerate(result.n_values)} for i, g in enumerate(result.n_values)}

    payload = {"n_values": result.n_values, "n_per_class": result.n_per_class, "beta_single": result.beta_single,
               "beta_own": {str(k): v for k, v in result.beta_own.items()}, "mean_confidence_single": grid(mc),
               "mean_confidence_own": grid(mo), "target_rate": grid(tr),
               "summaries": {str(k): v for k, v in result.summaries.items()}}
    arrays = {"targets": result.targets.astype(np.int8), "predictions": result.predictions,
              "z_single": result.z_single, "z_own": result.z_own, "status": result.status,
              "samples": result.samples.astype(np.float16), "sample_targets": result.sample_targets.astype(np.int8)}
    return _save(FIG6, "result-fig6", payload, arrays, config, result.wall_time_s, device, root)


def load_rubbish_results(root: Path | None = None, check_models: bool = True) -> RubbishTransferResult:
    """The cached Fig. 6 (sha256-verified; refused if the book models changed since)."""
    doc, a = _load(FIG6, root, check_models)
    assert a is not None
    return RubbishTransferResult(
        [int(n) for n in doc["n_values"]], int(doc["n_per_class"]), float(doc["beta_single"]),
        {int(k): float(v) for k, v in doc["beta_own"].items()}, a["targets"].astype(np.int64), a["predictions"],
        a["z_single"], a["z_own"], a["status"], a["samples"].astype(np.float32), a["sample_targets"].astype(np.int64),
        {int(k): v for k, v in doc["summaries"].items()}, doc["config"], doc["wall_time_s"], doc["environment"])


def save_confidence_results(results: Mapping[int, Mapping[str, Any]], wall: float,
                            models: Mapping[str, Mapping[str, str]] | None = None, device: Any = "cpu",
                            root: Path | None = None) -> dict[str, Any]:
    """Write ``results/fig7_confidence.json`` (from :func:`dam_utils.confidence.confidence_results`)."""
    from .confidence import BETA_BRACKET

    models = models or model_records(list(results), root)
    config = {"models": dict(models), "images": "all MNIST test images", "bracket": list(BETA_BRACKET)}
    payload = {"n_values": [int(n) for n in results], "results": {str(k): v for k, v in results.items()}}
    return _save(FIG7, "result-fig7", payload, None, config, wall, device, root)


def load_confidence_results(root: Path | None = None, check_models: bool = True) -> dict[int, dict[str, Any]]:
    """The cached Fig. 7 results keyed by n (sha256-verified; refused if the book models changed since)."""
    doc, _ = _load(FIG7, root, check_models)
    return {int(k): v for k, v in doc["results"].items()}


# ---------------------------------------------------------------------------------------------------------
# Tables and figures for the chapter
# ---------------------------------------------------------------------------------------------------------


def _fmt(ours: float | None, ref: float | None) -> str:
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return "–"
    if ref is None:
        return f"{ours:.1f}"
    return f"{ours:.1f} ({ref:g}; {ours - ref:+.1f})"


def _by_generator(n_values: Sequence[int], cell: Callable[[int, int, int, int], str],
                  extra: Callable[[int], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Table rows, one per generating model, largest n on top as in the paper's Figs. 5 and 6;
    ``cell(g, t, n_g, n_t)`` fills the column of tested model t."""
    rows = []
    for g in sorted(range(len(n_values)), key=lambda i: -n_values[i]):
        row: dict[str, Any] = {"generated by": f"n = {n_values[g]}"}
        for t, nt in enumerate(n_values):
            row[f"tested n = {nt}"] = cell(g, t, n_values[g], nt)
        rows.append({**row, **(extra(g) if extra else {})})
    return rows


def fig5_rows(result: TransferResult, paper: Mapping[int, Mapping[int, float]] | None = None,
              crossed_only: bool = False) -> list[dict[str, Any]]:
    """Rows for :func:`dam_utils.metrics.html_table`: one per generator (largest n on top, as in the paper);
    each cell "ours (paper; ours − paper)" in percent, plus the clean errors and failed crossings."""
    from .paper import FIG5_TRANSFER_ERROR, TEST_ERROR

    paper = FIG5_TRANSFER_ERROR if paper is None else paper
    tab = result.table(crossed_only)
    rows = _by_generator(result.n_values, lambda g, t, ng, nt: _fmt(float(tab[g, t]), paper.get(ng, {}).get(nt)),
                         lambda g: {"failed crossings": int((~result.crossed[g]).sum())})
    clean = {"generated by": "clean test set, error (%)"}
    for nt in result.n_values:
        clean[f"tested n = {nt}"] = _fmt(result.clean_error_full[nt], TEST_ERROR.get(nt))
    clean["failed crossings"] = None
    return [*rows, clean]


def slides_rows(result: TransferResult) -> list[dict[str, Any]]:
    """The talk slides' n = 2 / n = 8 table beside ours (only the cells both have)."""
    from .paper import SLIDES_TRANSFER_ERROR

    rows = []
    for g, row in SLIDES_TRANSFER_ERROR.items():
        for t, ref in row.items():
            ours = result.cell(g, t) if g in result.n_values and t in result.n_values else None
            rows.append({"generated by": g, "tested": t, "slides (%)": ref, "ours (%)": ours,
                         "ours − slides (points)": None if ours is None else ours - ref})
    return rows


def fig6_rows(result: RubbishTransferResult, own: bool = False) -> list[dict[str, Any]]:
    """Mean confidence (percent) table, largest generator on top; cells with a number in the paper's text
    show "ours (paper; difference)"."""
    from .paper import FIG6_MEAN_CONFIDENCE

    mc = result.mean_confidence(own)
    return _by_generator(result.n_values, lambda g, t, ng, nt: _fmt(
        float(mc[g, t]), None if own else FIG6_MEAN_CONFIDENCE.get((ng, nt))))


def _imshow_grid(ax: Any, img: np.ndarray) -> None:
    ax.imshow(img.reshape(28, 28), cmap="gray", vmin=-1, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_transfer_samples(result: TransferResult, data: Any, n_show: int = 8) -> Any:
    """Clean test images (top row) and each generator's behind image (one row per n), labelled with the
    generator's second choice."""
    import matplotlib.pyplot as plt

    k = min(n_show, len(result.sample_positions))
    G = len(result.n_values)
    fig, axes = plt.subplots(G + 1, k, figsize=(1.1 * k, 1.2 * (G + 1)), squeeze=False)
    for j in range(k):
        pos = int(result.sample_positions[j])
        _imshow_grid(axes[0, j], data.x_test[int(result.indices[pos])].cpu().numpy())
        axes[0, j].set_title(f"{int(result.labels[pos])}", fontsize=8)
        for g in range(G):
            _imshow_grid(axes[g + 1, j], result.samples[g, j])
            axes[g + 1, j].set_title(f"→ {int(result.second[g, pos])}", fontsize=8)
    axes[0, 0].set_ylabel("clean", fontsize=8)
    for g, n in enumerate(result.n_values):
        axes[g + 1, 0].set_ylabel(f"n = {n}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_rubbish_samples(result: RubbishTransferResult, per_class: int = 1) -> Any:
    """One row per generator, ``per_class`` images of each class (the target class above each image)."""
    import matplotlib.pyplot as plt

    have = len(result.sample_targets) // 10
    k = min(per_class, have)
    G = len(result.n_values)
    fig, axes = plt.subplots(G * k, 10, figsize=(10 * 1.0, 1.1 * G * k), squeeze=False)
    for g, n in enumerate(result.n_values):
        for r in range(k):
            for c in range(10):
                ax = axes[g * k + r, c]
                _imshow_grid(ax, result.samples[g, 10 * r + c])
                if g == 0 and r == 0:
                    ax.set_title(str(c), fontsize=9, color="green")
            axes[g * k + r, 0].set_ylabel(f"n = {n}", fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------
# The chapter: load the cache or recompute
# ---------------------------------------------------------------------------------------------------------

#: Defaults of the chapter's ``n_images`` / ``n_per_class`` per profile (``paper``: the paper's sizes).
CHAPTER_SIZES: dict[str, dict[str, int]] = {
    "paper": {"n_images": 10000, "n_per_class": 100},
    "cpu": {"n_images": 10000, "n_per_class": 100},
    "smoke": {"n_images": 20, "n_per_class": 2},
}


@dataclass
class ChapterResults:
    """What chapter 4 shows: Figs. 5, 6, 7 (``fig7``: :func:`dam_utils.confidence.confidence_results`), where
    they come from (``source``), the model entries, and the models themselves when computed here."""

    fig5: TransferResult
    fig6: RubbishTransferResult
    fig7: dict[int, dict[str, Any]]
    source: str
    entries: dict[int, dict[str, Any]]
    models: dict[int, DAM] | None = None


def chapter_results(
    n_values: Sequence[int],
    profile: str,
    recompute: bool,
    data: Any,
    n_images: int | None = None,
    n_per_class: int | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    train_overrides: Mapping[str, Any] | None = None,
) -> ChapterResults:
    """Load the cached Figs. 5-7 (default), or recompute them (``recompute`` or profile ``smoke``).

    Loading: the caches must contain every n of ``n_values`` (a subset is selected); otherwise an
    :class:`~dam_utils.artifacts.ArtifactError` says to recompute. Recomputing: the book models are used
    where they exist (profile ``smoke`` always trains tiny ones); missing ones are trained here with the
    profile's preset and ``train_overrides`` (K, epochs, seed); ``seed`` draws the rubbish noise. Attack
    presets follow ``profile``; ``n_images`` and
    ``n_per_class`` default to :data:`CHAPTER_SIZES`. Nothing is written to ``artifacts/``.
    """
    from .artifacts import entry
    from .confidence import confidence_results

    n_values = [int(n) for n in n_values]
    sizes = CHAPTER_SIZES[profile]
    if not recompute and profile != "smoke":
        r5, r6, r7 = load_transfer_results(), load_rubbish_results(), load_confidence_results()
        missing = [n for n in n_values if n not in r5.n_values or n not in r6.n_values or n not in r7]
        if missing:
            raise ArtifactError(
                f"the cached results have n = {r5.n_values}, not {missing}: run the chapter with recompute=True "
                "(see README.md, 'Re-running with other n').")
        entries = {n: entry(r5.config["models"][str(n)]["name"]) for n in n_values}
        return ChapterResults(r5.select(n_values), r6.select(n_values), {n: r7[n] for n in n_values},
                              "loaded from artifacts/results/", entries)
    models, ms, entries = obtain_models(n_values, profile, data, device, train_all=profile == "smoke",
                                        **dict(train_overrides or {}))
    t0 = time.perf_counter()
    r7 = confidence_results(models, data)
    wall7 = time.perf_counter() - t0
    for r in r7.values():
        r["wall_time_s"] = wall7
    r5 = adversarial_transfer(models, data, n_images or sizes["n_images"], DeformConfig.preset(profile), m=ms,
                              device=device)
    r6 = rubbish_transfer(models, n_per_class or sizes["n_per_class"], RubbishConfig.preset(profile), m=ms,
                          beta_own={n: r7[n]["beta_sm"] for n in n_values}, seed=seed, device=device)
    return ChapterResults(r5, r6, r7, "computed in this notebook", entries, models)


# ---------------------------------------------------------------------------------------------------------
# Command line: recompute and cache (`make reproduce`)
# ---------------------------------------------------------------------------------------------------------


def compute_and_save(
    figs: Sequence[int] = (5, 6, 7),
    n_values: Sequence[int] = (2, 3, 20, 30),
    n_images: int = 10000,
    n_per_class: int = 100,
    profile: str = "cpu",
    device: str = "cpu",
    seed: int = 0,
    root: Path | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Recompute Figs. 5, 6, 7 with the book models and cache them (wall time per figure, seconds)."""
    from .artifacts import load_book_model
    from .confidence import confidence_results
    from .data import load_mnist

    data = load_mnist()
    models, ms = {}, {}
    for n in n_values:
        models[int(n)], e = load_book_model(int(n), device=device, root=root)
        ms[int(n)] = int(e["config"]["m"])
    records = model_records(n_values, root)
    walls: dict[str, float] = {}
    conf = None
    if 7 in figs or 6 in figs:
        t0 = time.perf_counter()
        conf = confidence_results(models, data)
        walls["fig7"] = time.perf_counter() - t0
        if 7 in figs:
            save_confidence_results(conf, walls["fig7"], records, device, root)
    if 5 in figs:
        res5 = adversarial_transfer(models, data, n_images, DeformConfig.preset(profile), m=ms, device=device,
                                    progress=progress)
        save_transfer_results(res5, records, device, root)
        walls["fig5"] = res5.wall_time_s
    if 6 in figs:
        assert conf is not None
        res6 = rubbish_transfer(models, n_per_class, RubbishConfig.preset(profile), m=ms,
                                beta_own={n: conf[n]["beta_sm"] for n in conf}, seed=seed, device=device,
                                progress=progress)
        save_rubbish_results(res6, records, device, root)
        walls["fig6"] = res6.wall_time_s
    return walls


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Recompute and cache the results of chapter 4 (Figs. 5, 6, 7).")
    ap.add_argument("--fig", type=int, nargs="+", default=[5, 6, 7], choices=[5, 6, 7])
    ap.add_argument("--n", type=int, nargs="+", default=[2, 3, 20, 30], help="powers n (book models)")
    ap.add_argument("--n-images", type=int, default=10000, help="test images deformed per model (Fig. 5)")
    ap.add_argument("--n-per-class", type=int, default=100, help="rubbish images per class per model (Fig. 6)")
    ap.add_argument("--profile", default="cpu", choices=["paper", "cpu", "smoke"], help="attack preset")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    walls = compute_and_save(args.fig, args.n, args.n_images, args.n_per_class, args.profile, args.device,
                             args.seed)
    for k, v in walls.items():
        print(f"{k}: {v:.0f} s")


if __name__ == "__main__":
    main()
