"""The GPU round trip of issue 11, run here on the CPU with tiny models: train and measure, pack, import."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dam_utils import artifacts
from dam_utils.paper_scale import (
    PART_BYTES,
    SEED_TABLE,
    compress_weights,
    decompress_weights,
    import_pack,
    read_pack,
    run,
    weights_sha256,
)
from dam_utils.params import ParameterError


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("out")
    doc = run([2, 3], [0, 1], out, profile="smoke", device="cpu", run_dir=out / "runs", transfer_images=12,
              tag="t")
    return out, doc


def test_weights_compress_losslessly() -> None:
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(50, 794, generator=g) * 0.6 - 0.3).clamp(-1, 1).numpy()  # clipped, like trained weights
    blob = compress_weights(w[:, :784], w[:, 784:])
    xi, xc = decompress_weights(blob, 50, 794)
    assert np.array_equal(xi, w[:, :784]) and np.array_equal(xc, w[:, 784:])
    assert weights_sha256(xi, xc) == weights_sha256(w[:, :784], w[:, 784:])
    assert len(blob) < 0.95 * w.nbytes


def test_a_run_measures_every_model_and_packs_its_weights(packed) -> None:
    out, doc = packed
    assert [(e["n"], e["seed"]) for e in doc["models"]] == [(2, 0), (2, 1), (3, 0), (3, 1)]
    for e in doc["models"]:
        assert e["epochs"] == e["config"]["epochs"] == len(e["history"]) and e["config"]["seed"] == e["seed"]
        assert 0 <= e["test_error"] <= 100 and "dead_train_%" in e["health"] and e["beta_sm"] > 0
        assert e["blob"]["length"] > 0 and e["environment"]["stack"]["seeds"] == [0, 1]
    n3 = [e for e in doc["models"] if e["n"] == 3]
    assert all(e["transfer"]["n_images"] == 12 for e in n3)  # Fig. 5's cells against n = 2 of the same seed
    assert {p.name for p in out.iterdir() if p.is_file()} == {"t.json", "t.part00"}
    assert all(meta["length"] <= PART_BYTES for meta in doc["parts"])


def test_import_stores_what_was_trained(packed, tmp_path) -> None:
    out, doc = packed
    stored = import_pack(out, root=tmp_path)
    assert len(stored) == 4
    for e in doc["models"]:
        model, entry = artifacts.load_model(e["name"], root=tmp_path)
        assert weights_sha256(model.xi.numpy(), model.xc.numpy()) == e["weights_sha256"]
        assert entry["test_error_cpu"] == pytest.approx(e["test_error"], abs=0.05)
        assert entry["environment"]["device"] == "cpu" and entry["provenance"]["code_matches_this_checkout"]
        assert artifacts.load_history(e["name"], root=tmp_path) == e["history"]
    manifest = artifacts.read_manifest(tmp_path)
    assert not manifest.get("paper_models") and not manifest.get(SEED_TABLE)  # smoke models never become paper ones


def test_the_published_scale_becomes_the_paper_models(packed, tmp_path) -> None:
    """The import rule: a pack of the paper profile with no override fills manifest["paper_models"] (seed 0) and
    manifest["paper_seed_models"] (every seed). The smoke pack's document is relabelled to exercise it."""
    out, _ = packed
    copy = tmp_path / "pack"
    copy.mkdir()
    doc = json.loads((out / "t.json").read_text())
    doc.update(profile="paper", overrides={})
    (copy / "t.json").write_text(json.dumps(doc))
    (copy / "t.part00").write_bytes((out / "t.part00").read_bytes())
    import_pack(copy, root=tmp_path / "artifacts")
    manifest = artifacts.read_manifest(tmp_path / "artifacts")
    assert manifest["paper_models"] == {"2": doc["models"][0]["name"], "3": doc["models"][2]["name"]}
    assert sorted(manifest[SEED_TABLE]) == ["2/0", "2/1", "3/0", "3/1"]


def test_a_modified_or_missing_part_is_refused(packed, tmp_path) -> None:
    out, _ = packed
    (tmp_path / "t.json").write_text((out / "t.json").read_text())
    with pytest.raises(FileNotFoundError):
        read_pack(tmp_path)
    part = bytearray((out / "t.part00").read_bytes())
    part[len(part) // 2] ^= 1
    (tmp_path / "t.part00").write_bytes(bytes(part))
    with pytest.raises(ValueError, match="truncated or modified"):
        read_pack(tmp_path)


def test_weights_past_the_size_limit_are_left_out(tmp_path) -> None:
    doc = run([2], [0], tmp_path, profile="smoke", device="cpu", run_dir=tmp_path / "runs", max_mib=1e-6,
              transfer_images=0)
    assert doc["models"][0]["blob"] is None and doc["parts"] == []
    stored = import_pack(tmp_path, root=tmp_path / "artifacts")
    assert stored[0]["weights"] == "not kept" and not (tmp_path / "artifacts" / "models").exists()


def test_a_spent_budget_starts_nothing_and_says_so(tmp_path) -> None:
    """(A budget that runs out inside a stack stops it after the epoch: tests/test_train_stack.py.)"""
    doc = run([2, 3], [0], tmp_path, profile="smoke", device="cpu", run_dir=tmp_path / "runs", budget_s=1e-9)
    assert doc["models"] == [] and doc["not_started"] == [2, 3]
    assert json.loads((tmp_path / "book_smoke_seeds0.json").read_text())["not_started"] == [2, 3]


@pytest.mark.parametrize(("kw", "name"), [({"n_values": [0]}, "n_values"), ({"budget_s": 0.0}, "budget_s"),
                                          ({"kind": "all"}, "kind"), ({"max_mib": -1.0}, "max_mib"),
                                          ({"transfer_images": -3}, "transfer_images"),
                                          ({"profile": "gpu"}, "profile")])
def test_bad_arguments_fail_before_any_work(tmp_path, kw: dict, name: str) -> None:
    args = {"n_values": [2], "seeds": [0], "out": tmp_path / "never", **kw}
    with pytest.raises(ParameterError, match=name):
        run(args.pop("n_values"), args.pop("seeds"), args.pop("out"), **args)
    assert not (tmp_path / "never").exists()
