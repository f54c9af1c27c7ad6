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

import contextlib
import fcntl
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write_bytes, atomic_write_text
from .model import DAM
from .paths import artifacts_dir

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


def save_model(result: Any, data: Any, root: Path | None = None, book: bool = True) -> dict[str, Any]:
    """Store a :class:`~dam_utils.train.TrainResult`: weights, history and a manifest entry.

    The final train and test errors are measured here on the full sets with the final weights.
    With ``book=True`` the model becomes the book's model for its n.
    """
    from .data import dataset_fingerprint
    from .train import model_name

    root = root or artifacts_dir()
    cfg, model = result.config, result.model
    name = model_name(cfg)
    buf = io.BytesIO()
    np.savez(buf, xi=model.xi.cpu().numpy(), xc=model.xc.cpu().numpy(), n=np.int64(model.n), T=np.float64(model.T))
    wpath = root / "models" / f"{name}.npz"
    atomic_write_bytes(wpath, buf.getvalue())
    hpath = root / "models" / f"{name}.history.json"
    atomic_write_text(hpath, json.dumps(result.history, indent=0) + "\n")
    info = {
        "kind": "dam-weights",
        "config": cfg.to_dict(),
        "environment": result.environment,
        "epochs": len(result.history),
        "wall_time_s": round(result.wall_time_s, 1),
        "train_error": model.error_rate(data.x_train, data.y_train),
        "test_error": model.error_rate(data.x_test, data.y_test),
        "data": {"name": data.name, **dataset_fingerprint(data)},
        "history": name + ".history",
    }
    register(name + ".history", hpath, {"kind": "training-history", "model": name}, root)
    out = register(name, wpath, info, root)
    if book:
        with _locked_manifest(root) as manifest:
            manifest["book_models"][str(cfg.n)] = name
    return out


def load_model(name: str, device: str | torch.device = "cpu", root: Path | None = None) -> tuple[DAM, dict[str, Any]]:
    """Load verified weights by artifact name; returns the model and its manifest entry."""
    path, e = verified_path(name, root)
    with np.load(path) as z:
        model = DAM(torch.from_numpy(z["xi"]), torch.from_numpy(z["xc"]), int(z["n"]), float(z["T"]))
    return model.to(device), e


def load_history(name: str, root: Path | None = None) -> list[dict[str, float]]:
    path, _ = verified_path(name + ".history", root)
    return json.loads(path.read_text())


def book_model_name(n: int, root: Path | None = None) -> str:
    """Name of the book's model for power ``n`` (``manifest['book_models']``)."""
    names = read_manifest(root)["book_models"]
    if str(n) not in names:
        have = ", ".join(sorted(names, key=int)) or "none"
        raise ArtifactError(
            f"no committed model for n={n} (have n = {have}). Train one with "
            f"`python -m dam_utils.train --n {n} --profile cpu`, or re-run the chapter with recompute=True."
        )
    return names[str(n)]


def load_book_model(n: int, device: str | torch.device = "cpu", root: Path | None = None) -> tuple[DAM, dict[str, Any]]:
    """The book's verified model for power ``n``."""
    return load_model(book_model_name(n, root), device, root)


def export_checkpoint(checkpoint: str | Path, data: Any, root: Path | None = None, book: bool = True) -> dict[str, Any]:
    """Turn a finished (or stopped) training checkpoint into a committed artifact."""
    from .checkpoint import load_checkpoint
    from .model import N_PIXELS
    from .train import TrainConfig, TrainResult

    state = load_checkpoint(checkpoint)
    cfg = TrainConfig(**state["config"])
    w = state["weights"]
    done = int(state["epoch"])
    if done < cfg.epochs:  # a run stopped early: record what was really done
        import dataclasses

        cfg = dataclasses.replace(cfg, epochs=done)
    model = DAM(w[:, :N_PIXELS].clone(), w[:, N_PIXELS:].clone(), cfg.n, cfg.temperature(done))
    res = TrainResult(model=model, history=state["history"], wall_time_s=state["wall_time_s"], config=cfg,
                      environment=state["environment"])
    return save_model(res, data, root, book)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from .data import load_mnist

    ap = argparse.ArgumentParser(description="Export training checkpoints to artifacts/ or verify artifacts.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("checkpoints", nargs="+")
    sub.add_parser("verify")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        data = load_mnist()
        for ck in args.checkpoints:
            e = export_checkpoint(ck, data)
            print(f"{e['path']}: epochs={e['epochs']} train={e['train_error']:.2f}% test={e['test_error']:.2f}%")
    else:
        for name in read_manifest()["artifacts"]:
            verified_path(name)
            print(f"ok  {name}")


if __name__ == "__main__":
    main()
