"""Training checkpoints that refuse to be misread.

File layout: the magic line ``DAMCKPT1``, the SHA-256 (hex) of the payload, a newline,
then the payload (a ``torch.save`` of a dict of tensors and plain values). On load:

* a file without the magic line is *foreign* (not written by dam-book) and is refused;
* a payload whose hash differs is *corrupted* (truncated, bit-flipped) and is refused;
* a checkpoint of another configuration is refused by :func:`check_compatible`.

Writes are atomic (:mod:`dam_utils.atomic`), so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import torch

from .atomic import atomic_write_bytes

MAGIC = b"DAMCKPT1\n"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (foreign, corrupted or of another configuration)."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Serialise ``state`` with a checksum and write it atomically to ``path``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    atomic_write_bytes(path, MAGIC + digest + b"\n" + payload)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying its origin and checksum."""
    with open(path, "rb") as fh:
        blob = fh.read()
    if not blob.startswith(MAGIC):
        raise CheckpointError(
            f"{path} is not a dam-book checkpoint (it does not start with {MAGIC!r}). "
            "Pass a file written by dam_utils.train, or delete it to start from scratch."
        )
    header_end = len(MAGIC) + 64
    digest, payload = blob[len(MAGIC) : header_end].decode(errors="replace"), blob[header_end + 1 :]
    actual = hashlib.sha256(payload).hexdigest()
    if actual != digest:
        raise CheckpointError(
            f"{path} is corrupted: its payload hashes to {actual[:16]}... but the header says "
            f"{digest[:16]}... (truncated or modified file). Delete it and retrain, or resume from an "
            "earlier checkpoint."
        )
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:  # pragma: no cover - a valid hash makes this unlikely
        raise CheckpointError(f"{path} has a valid checksum but cannot be unpickled: {exc}") from exc


def check_compatible(saved: dict[str, Any], wanted: dict[str, Any], ignore: tuple[str, ...] = ("epochs",)) -> None:
    """Refuse to resume when the saved config differs from the wanted one (except ``ignore``)."""
    diffs = [
        f"{k}: checkpoint has {saved.get(k)!r}, you asked for {wanted.get(k)!r}"
        for k in sorted(set(saved) | set(wanted))
        if k not in ignore and saved.get(k) != wanted.get(k)
    ]
    if diffs:
        raise CheckpointError(
            "checkpoint belongs to another training configuration; refusing to resume.\n  "
            + "\n  ".join(diffs)
            + "\nStart a fresh run (resume=False) or use the matching configuration."
        )
