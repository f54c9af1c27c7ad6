"""The one load-or-train function (dam_utils.book_models.obtain_models) and the training CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dam_utils import artifacts
from dam_utils.artifacts import ArtifactError
from dam_utils.book_models import main, obtain_models
from dam_utils.paths import artifacts_dir
from dam_utils.reproduce import chapter_results


def test_smoke_profile_trains_here(mnist) -> None:
    cm = obtain_models([2, 30], "smoke", mnist, K=12, epochs=1)
    assert cm.trained_here and sorted(cm.models) == [2, 30]
    assert cm.models[30].K == 12 and cm.loss_power == {2: 2, 30: 30}
    assert cm.entries[2]["config"]["epochs"] == 1 and cm.entries[2]["wall_time_s"] > 0


def test_cpu_profile_loads_the_committed_models(mnist) -> None:
    cm = obtain_models([2], "cpu", mnist)
    model, entry = artifacts.load_book_model(2)
    assert not cm.trained_here and torch.equal(cm.models[2].xi, model.xi)
    assert cm.entries[2] == entry and cm.loss_power[2] == entry["config"]["m"]


def test_paper_profile_never_falls_back_to_cpu_models(tmp_path, mnist) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(artifacts_dir(), root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.pop("paper_models", None)
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"no committed 'paper' model for n=2.*--profile paper"):
        obtain_models([2], "paper", mnist, root=root)


def test_a_committed_model_of_another_size_is_refused(mnist) -> None:
    with pytest.raises(ArtifactError, match=r"K=2000.*recompute=True"):
        obtain_models([2], "cpu", mnist, K=100)
    with pytest.raises(ArtifactError, match="no committed 'cpu' model for n=7"):
        obtain_models([7], "cpu", mnist)


def test_bad_profile_fails_before_any_work(mnist) -> None:
    with pytest.raises(Exception, match="profile"):
        obtain_models([2], "gpu", mnist)


def test_cli_trains_resumably_and_stores_beside_the_book_models(tmp_path, monkeypatch) -> None:
    root = tmp_path / "artifacts"
    monkeypatch.setattr(artifacts, "artifacts_dir", lambda: root)
    main(["--n", "3", "--profile", "smoke", "--epochs", "1", "--run-dir", str(tmp_path / "runs")])
    manifest = artifacts.read_manifest(root)
    (name,) = [k for k, e in manifest["artifacts"].items() if e.get("kind") == "dam-weights"]
    assert name.startswith("dam_n3_K20_e1_") and (tmp_path / "runs" / f"{name}.ckpt").exists()
    assert manifest["book_models"] == {}  # smoke models are never the committed models
    assert 0 <= manifest["artifacts"][name]["health"]["dead_train_%"] <= 100


def test_chapter4_paper_profile_never_shows_the_cpu_cache(mnist) -> None:
    """Issue 10: profile "paper" with recompute False loads paper-scale results or fails, saying what to run."""
    if "paper_models" in artifacts.read_manifest():
        pytest.skip("paper-scale models are committed")
    with pytest.raises(ArtifactError, match="no committed 'paper' model"):
        chapter_results([2, 30], "paper", False, mnist)
