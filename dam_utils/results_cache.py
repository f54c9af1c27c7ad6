"""The results cache of chapter 4 (Figs. 5-7): files under ``artifacts/results/``, their checksums, and staleness.

``fig5_transfer.json`` / ``fig6_rubbish.json`` / ``fig7_confidence.json`` hold the tables, the configuration
(attack config, image counts, seed, and each model's artifact name and SHA-256),
:func:`~dam_utils.provenance.environment_info` and the wall time; ``fig5_transfer.npz`` and ``fig6_rubbish.npz``
hold the per-image results (labels predicted by every model, crossings, confidences) and a few sample images.
All are written atomically and registered in ``artifacts/manifest.json``.

Loading says what is wrong, with one exception class each:

* :class:`ResultMissingError`: the result is not in the manifest (never computed);
* :class:`ResultModifiedError`: a file's SHA-256 differs from the manifest's (it was edited: tampering);
* :class:`StaleResultError`: it was computed with other models than the current book models (recompute it
  with ``make reproduce``, :mod:`dam_utils.reproduce`).

The experiments themselves are :mod:`dam_utils.transfer`; nothing here computes.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import ArtifactError, book_model_name, entry, read_manifest, register, sha256_file, verified_path
from .atomic import atomic_write_bytes, atomic_write_text
from .confidence import BETA_BRACKET
from .paths import artifacts_dir
from .provenance import environment_info
from .transfer import RubbishTransferResult, TransferResult

__all__ = [
    "FIG5",
    "FIG6",
    "FIG7",
    "RESULTS_FORMAT",
    "ResultMissingError",
    "ResultModifiedError",
    "StaleResultError",
    "check_fresh",
    "load_confidence_results",
    "load_result",
    "load_rubbish_results",
    "load_transfer_results",
    "model_records",
    "save_confidence_results",
    "save_result",
    "save_rubbish_results",
    "save_transfer_results",
]

RESULTS_FORMAT = "dam-book-results/1"
#: Artifact names (manifest keys) of the cached results; the files are ``results/<name>.json`` / ``.npz``.
FIG5, FIG6, FIG7 = "fig5_transfer", "fig6_rubbish", "fig7_confidence"


class ResultMissingError(ArtifactError):
    """A cached result is not in the manifest (not computed yet)."""


class ResultModifiedError(ArtifactError):
    """A cached result's file does not match the SHA-256 in the manifest: it was modified after it was written."""


class StaleResultError(ArtifactError):
    """A cached result was computed with other models than the current book models."""


def model_records(n_values: Sequence[int], root: Path | None = None,
                  profile: str = "cpu") -> dict[str, dict[str, str]]:
    """``{str(n): {"name", "sha256"}}`` of the committed ``profile`` models (what a cache is checked against)."""
    out = {}
    for n in n_values:
        name = book_model_name(int(n), root, profile)
        out[str(int(n))] = {"name": name, "sha256": entry(name, root)["sha256"]}
    return out


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


def save_result(name: str, kind: str, payload: dict[str, Any], arrays: dict[str, np.ndarray] | None,
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


def _verified(name: str, root: Path) -> tuple[Path, dict[str, Any]]:
    """The file of a registered result after checking its SHA-256: :class:`ResultModifiedError` when it
    differs from the manifest's (the file was edited after it was written)."""
    e = entry(name, root)
    path = root / e["path"]
    if path.exists() and sha256_file(path) != e["sha256"]:
        raise ResultModifiedError(
            f"{path} does not match the manifest (sha256 {sha256_file(path)[:16]}... != {e['sha256'][:16]}...): "
            "the file was modified after it was recorded. Restore it with git, or recompute it with "
            "`make reproduce`.")
    return verified_path(name, root)


def check_fresh(doc_models: Mapping[str, Mapping[str, str]], name: str, root: Path | None = None) -> None:
    """Raise :class:`StaleResultError` unless every model recorded in a cache is still the committed model
    with the same SHA-256: the book model for its n, or the entry ``key`` of the manifest table ``table``
    when the record names one (the networks of chapter 5)."""
    manifest = read_manifest(root)
    problems = []
    for n, rec in doc_models.items():
        cur = manifest.get(rec.get("table", "book_models"), {}).get(rec.get("key", str(n)))
        if cur is None:
            problems.append(f"{n}: no committed model any more")
        elif cur != rec["name"]:
            problems.append(f"{n}: computed with {rec['name']}, the committed model is now {cur}")
        elif manifest["artifacts"].get(cur, {}).get("sha256") != rec["sha256"]:
            problems.append(f"{n}: the weights of {cur} changed (sha256 {rec['sha256'][:12]}... recorded)")
    if problems:
        raise StaleResultError(
            f"the cached {name} was computed with other models than the current book models ("
            + "; ".join(problems) + "). Recompute it: `python -m dam_utils.reproduce` (or `make reproduce`; "
            "chapter 5: `python -m dam_utils.section6`), or run the chapter with recompute=True.")


def load_result(name: str, root: Path | None = None, check_models: bool = True
                ) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """The JSON document and arrays of a cached result, both SHA-256 verified; refused (:class:`StaleResultError`)
    when a model it records is no longer the committed one (``check_models``)."""
    root = root or artifacts_dir()
    if name not in read_manifest(root)["artifacts"]:
        raise ResultMissingError(
            f"no cached {name} in {root / 'manifest.json'}: compute it with `python -m dam_utils.reproduce` "
            "(`make reproduce`), or run the chapter with recompute=True.")
    jpath, e = _verified(name, root)
    doc = json.loads(jpath.read_text())
    if doc.get("format") != RESULTS_FORMAT:
        raise ArtifactError(f"{jpath} is not a {RESULTS_FORMAT} file")
    if check_models:
        check_fresh(doc["config"]["models"], name, root)
    arrays = None
    if "arrays" in e:
        npath, _ = _verified(e["arrays"], root)
        with np.load(npath) as z:
            arrays = {k: z[k] for k in z.files}
    return doc, arrays


def transfer_payload(result: TransferResult) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON payload and the arrays of a transfer table, as :func:`save_transfer_results` writes them (chapter 6
    adds its own keys to both); :func:`transfer_from` reads them back."""
    table, table_c = result.table(), result.table(crossed_only=True)
    keys = [str(k) for k in result.n_values]
    payload = {
        "n_values": result.n_values,
        "table": {g: {t: table[i, j] for j, t in enumerate(keys)} for i, g in enumerate(keys)},
        "table_crossed_only": {g: {t: table_c[i, j] for j, t in enumerate(keys)} for i, g in enumerate(keys)},
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
    if result.distances is not None:
        arrays["distances"] = result.distances.astype(np.float32)
    return payload, arrays


def _key(k: Any) -> Any:
    """A transfer table's model key as saved: a power n (Fig. 5) or a name (chapter 6's models)."""
    return int(k) if isinstance(k, int) or str(k).isdigit() else str(k)


def transfer_from(doc: dict[str, Any], a: dict[str, np.ndarray]) -> TransferResult:
    """The :class:`TransferResult` of a document and arrays written from :func:`transfer_payload`."""
    return TransferResult(
        [_key(n) for n in doc["n_values"]], a["indices"], a["labels"], a["predictions"], a["clean_predictions"],
        a["top"], a["second"], a["crossed"], a["sample_positions"], a["samples"],
        {_key(k): v for k, v in doc["clean_error_full"].items()},
        {_key(k): v for k, v in doc["summaries"].items()}, doc["config"], doc["wall_time_s"], doc["environment"],
        distances=a.get("distances"))


def save_transfer_results(result: TransferResult, models: Mapping[str, Mapping[str, str]] | None = None,
                          device: Any = "cpu", root: Path | None = None, name: str = FIG5) -> dict[str, Any]:
    """Write ``results/<name>.json`` + ``.npz`` atomically and register them (``name``: Fig. 5's table, or
    another transfer table such as appendix A's n = 2 / n = 8). ``models``: :func:`model_records` of the
    models used (default: the current book models of ``result.n_values``)."""
    models = models or model_records(result.n_values, root)
    config = {**result.config, "models": dict(models)}
    payload, arrays = transfer_payload(result)
    kind = "result-fig5" if name == FIG5 else f"result-transfer-{name}"
    return save_result(name, kind, payload, arrays, config, result.wall_time_s, device, root)


def load_transfer_results(root: Path | None = None, check_models: bool = True, name: str = FIG5) -> TransferResult:
    """A cached transfer table, Fig. 5's by default (sha256-verified; refused if the book models changed since)."""
    doc, a = load_result(name, root, check_models)
    assert a is not None
    return transfer_from(doc, a)


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
    return save_result(FIG6, "result-fig6", payload, arrays, config, result.wall_time_s, device, root)


def load_rubbish_results(root: Path | None = None, check_models: bool = True) -> RubbishTransferResult:
    """The cached Fig. 6 (sha256-verified; refused if the book models changed since)."""
    doc, a = load_result(FIG6, root, check_models)
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
    models = models or model_records(list(results), root)
    config = {"models": dict(models), "images": "all MNIST test images", "bracket": list(BETA_BRACKET)}
    payload = {"n_values": [int(n) for n in results], "results": {str(k): v for k, v in results.items()}}
    return save_result(FIG7, "result-fig7", payload, None, config, wall, device, root)


def load_confidence_results(root: Path | None = None, check_models: bool = True) -> dict[int, dict[str, Any]]:
    """The cached Fig. 7 results keyed by n (sha256-verified; refused if the book models changed since)."""
    doc, _ = load_result(FIG7, root, check_models)
    return {int(k): v for k, v in doc["results"].items()}
