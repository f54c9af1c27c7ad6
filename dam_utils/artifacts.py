"""Committed heavy results (trained weights, result tables) with provenance.

Layout::

    artifacts/manifest.json              one entry per file: path, sha256, config, environment
    artifacts/models/<name>.npz          xi (K, 784), xc (K, 10), n, T  (float32)
    artifacts/models/<name>.history.json per-epoch log of the training run

``manifest["book_models"]`` maps each power n to the model the chapters use. Every load
verifies the file's SHA-256 against the manifest and refuses a mismatch; every write is
atomic and the manifest is updated under a file lock, so parallel runs cannot tear it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write_bytes, atomic_write_text
from .checkpoint import load_checkpoint
from .data import dataset_fingerprint, load_mnist
from .health import health_report
from .model import DAM, N_PIXELS
from .paths import artifacts_dir
from .train_config import TrainConfig, TrainResult, model_name

MANIFEST_FORMAT = "dam-book-manifest/1"


class ArtifactError(RuntimeError):
    """A missing, unlisted or modified artifact."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(root: Path | None = None) -> Path:
    return (root or artifacts_dir()) / "manifest.json"


def read_manifest(root: Path | None = None) -> dict[str, Any]:
    path = manifest_path(root)
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "artifacts": {}, "book_models": {}}
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    return manifest


@contextlib.contextmanager
def _locked_manifest(root: Path | None = None) -> Iterator[dict[str, Any]]:
    """Read-modify-write the manifest under an exclusive lock; written atomically on exit."""
    root = root or artifacts_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = read_manifest(root)
        yield manifest
        atomic_write_text(manifest_path(root), json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def register(name: str, path: Path, entry: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """Add (or replace) the manifest entry for a file already written under ``root``."""
    root = root or artifacts_dir()
    full = {"path": str(path.relative_to(root)), "sha256": sha256_file(path), **entry}
    with _locked_manifest(root) as manifest:
        manifest["artifacts"][name] = full
    return full


def entry(name: str, root: Path | None = None) -> dict[str, Any]:
    manifest = read_manifest(root)
    if name not in manifest["artifacts"]:
        known = ", ".join(sorted(manifest["artifacts"])) or "none"
        raise ArtifactError(f"no artifact named {name!r} in {manifest_path(root)} (known: {known})")
    return manifest["artifacts"][name]


def committed_record(role: str, table: str, key: str, hint: str, root: Path | None = None
                     ) -> dict[str, dict[str, str]]:
    """``{role: {table, key, name, sha256}}``: the committed network ``manifest[table][key]`` a cached result is
    computed from, as :func:`dam_utils.results_cache.check_fresh` reads it back. :class:`FileNotFoundError`
    (with ``hint``, the command that makes one) when there is none."""
    name = read_manifest(root).get(table, {}).get(key)
    if name is None:
        raise FileNotFoundError(f"no committed {table}[{key!r}] for {role}: {hint}")
    return {role: {"table": table, "key": key, "name": name, "sha256": entry(name, root)["sha256"]}}


def verified_path(name: str, root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Path of a listed artifact after checking its SHA-256 against the manifest."""
    root = root or artifacts_dir()
    e = entry(name, root)
    path = root / e["path"]
    if not path.exists():
        raise ArtifactError(f"{path} is listed in the manifest but missing; run `git checkout -- {path}`")
    actual = sha256_file(path)
    if actual != e["sha256"]:
        raise ArtifactError(
            f"{path} does not match the manifest (sha256 {actual[:16]}... != {e['sha256'][:16]}...): "
            "the file was modified after it was recorded. Restore it with git or recompute it."
        )
    return path, e


def save_model(result: TrainResult, data: Any, root: Path | None = None, table: str | None = "book_models",
               name: str | None = None, extra: dict[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:
    """Store a :class:`~dam_utils.train_config.TrainResult`: weights, history and a manifest entry.

    The final train and test errors are measured here on the full sets with the final weights.
    With ``table`` set (``"book_models"`` or ``"paper_models"``, see :data:`MODEL_TABLES`) the model
    becomes the committed model of that table for its n. ``name`` replaces the canonical
    :func:`~dam_utils.train_config.model_name`, ``extra`` adds keys to the entry and ``key`` replaces n as the
    model's key in ``table`` (chapter 6's fine-tuned models).
    """
    cfg, model = result.config, result.model
    arrays = {"xi": model.xi.cpu().numpy(), "xc": model.xc.cpu().numpy(), "n": np.int64(model.n),
              "T": np.float64(model.T)}
    info = {
        "kind": "dam-weights",
        "config": cfg.to_dict(),
        "environment": result.environment,
        "epochs": len(result.history),
        "wall_time_s": round(result.wall_time_s, 1),
        "train_error": model.error_rate(data.x_train, data.y_train),
        "test_error": model.error_rate(data.x_test, data.y_test),
        "health": health_report(model, data.x_train, data.x_test),
        "data": {"name": data.name,  # a FeatureSet (chapter 6) hashes its float features itself
                 **(data.fingerprint() if hasattr(data, "fingerprint") else dataset_fingerprint(data))},
        **(extra or {}),
    }
    return store_weights(name or model_name(cfg), arrays, result.history, info, root, table, key or str(cfg.n))


def store_weights(name: str, arrays: Mapping[str, np.ndarray], history: list[dict[str, float]],
                  info: dict[str, Any], root: Path | None = None, table: str | None = None,
                  key: str | None = None) -> dict[str, Any]:
    """Write ``models/<name>.npz`` and ``models/<name>.history.json`` atomically, register both with
    ``info`` as the weights' manifest entry, and with ``table`` set make ``name`` the entry ``key`` of
    ``manifest[table]``. The one way every trained network of the book is stored."""
    root = root or artifacts_dir()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    wpath = root / "models" / f"{name}.npz"
    atomic_write_bytes(wpath, buf.getvalue())
    hpath = root / "models" / f"{name}.history.json"
    atomic_write_text(hpath, json.dumps(history, indent=0) + "\n")
    register(name + ".history", hpath, {"kind": "training-history", "model": name}, root)
    out = register(name, wpath, {**info, "history": name + ".history"}, root)
    if table is not None:
        set_table_entry(table, key or name, name, root)
    return out


def set_table_entry(table: str, key: str, name: str, root: Path | None = None) -> None:
    """``manifest[table][key] = name``, under the manifest's lock (the artifact ``name`` is registered already)."""
    with _locked_manifest(root) as manifest:
        manifest.setdefault(table, {})[key] = name


def load_model(name: str, device: str | torch.device = "cpu", root: Path | None = None) -> tuple[DAM, dict[str, Any]]:
    """Load verified weights by artifact name; returns the model and its manifest entry."""
    path, e = verified_path(name, root)
    with np.load(path) as z:
        model = DAM(torch.from_numpy(z["xi"]), torch.from_numpy(z["xc"]), int(z["n"]), float(z["T"]))
    return model.to(device), e


def load_history(name: str, root: Path | None = None) -> list[dict[str, float]]:
    path, _ = verified_path(name + ".history", root)
    return json.loads(path.read_text())


# Which manifest table holds the committed models of each profile (smoke models are never committed).
MODEL_TABLES = {"cpu": "book_models", "paper": "paper_models"}


def book_model_name(n: int, root: Path | None = None, profile: str = "cpu") -> str:
    """Name of the committed ``profile`` model for power ``n`` (``manifest["book_models"]`` for cpu,
    ``manifest["paper_models"]`` for paper); raises :class:`ArtifactError` naming the command to run."""
    if profile not in MODEL_TABLES:
        raise ArtifactError(f"{profile!r} models are never committed: run the chapter with recompute=True")
    table = read_manifest(root).get(MODEL_TABLES[profile], {})
    if str(n) not in table:
        have = ", ".join(sorted(table, key=int)) or "none"
        raise ArtifactError(
            f"no committed {profile!r} model for n={n} (committed: n = {have}). Train it with "
            f"`python -m dam_utils.book_models --n {n} --profile {profile}` and commit artifacts/, "
            f"or run the chapter with recompute=True (trains here, {profile!r} preset)."
        )
    return table[str(n)]


def load_book_model(n: int, device: str | torch.device = "cpu", root: Path | None = None,
                    profile: str = "cpu") -> tuple[DAM, dict[str, Any]]:
    """The committed, verified ``profile`` model for power ``n`` and its manifest entry."""
    return load_model(book_model_name(n, root, profile), device, root)


def export_checkpoint(checkpoint: str | Path, data: Any, root: Path | None = None,
                      table: str | None = "book_models") -> dict[str, Any]:
    """Turn a finished (or stopped) training checkpoint into a committed artifact."""
    state = load_checkpoint(checkpoint)
    cfg = TrainConfig(**state["config"])
    w = state["weights"]  # (K, 794): visible | class parts
    done = int(state["epoch"])
    if done < cfg.epochs:  # a run stopped early: record what was really done
        cfg = dataclasses.replace(cfg, epochs=done)
    model = DAM(w[:, :N_PIXELS].clone(), w[:, N_PIXELS:].clone(), cfg.n, cfg.temperature(done))
    res = TrainResult(model=model, history=state["history"], wall_time_s=state["wall_time_s"], config=cfg,
                      environment=state["environment"])
    return save_model(res, data, root, table)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Export training checkpoints to artifacts/ or verify artifacts.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("checkpoints", nargs="+")
    ex.add_argument("--table", default="book_models", choices=[*MODEL_TABLES.values(), "none"],
                    help="make the exported models the committed models of this table (none: only store them)")
    sub.add_parser("verify")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        data = load_mnist()
        for ck in args.checkpoints:
            e = export_checkpoint(ck, data, table=None if args.table == "none" else args.table)
            print(f"{e['path']}: epochs={e['epochs']} train={e['train_error']:.2f}% test={e['test_error']:.2f}%")
    else:
        for name in read_manifest()["artifacts"]:
            verified_path(name)
            print(f"ok  {name}")


if __name__ == "__main__":
    main()
