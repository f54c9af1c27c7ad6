"""The dead-memory study of chapter 1: its cache is current and a sample of it recomputes."""

from __future__ import annotations

import dataclasses

import pytest

from dam_utils.dead_memory_study import RECIPES, DeadStudyConfig, load_study, run_study


def test_smoke_study_records_every_recipe(mnist) -> None:
    cfg = DeadStudyConfig.preset("smoke")
    out = run_study(cfg, mnist, progress=False)
    assert list(out["curves"]) == list(RECIPES)
    for curve in out["curves"].values():
        assert [c["epoch"] for c in curve] == list(range(1, cfg.epochs + 1))
        assert all(0 <= c["dead_train_%"] <= 100 for c in curve)


def test_cached_study_is_the_current_cpu_preset() -> None:
    study = load_study()  # verifies the SHA-256 against the manifest
    assert study["config"] == dataclasses.asdict(DeadStudyConfig.preset("cpu")), "stale: re-run the study"
    assert sorted(study["curves"]) == sorted(RECIPES)
    every = study["config"]["every"]
    for curve in study["curves"].values():
        assert [c["epoch"] for c in curve] == list(range(every, study["config"]["epochs"] + 1, every))


@pytest.mark.slow
def test_first_record_of_the_cached_study_recomputes(mnist) -> None:
    """Re-train the p = 0.9 recipe for the first recorded epochs: the same dead share and errors."""
    study = load_study()
    cfg = DeadStudyConfig(**{**study["config"], "epochs": study["config"]["every"]})
    fresh = run_study(cfg, mnist, progress=False, recipes=("p=0.9",))["curves"]["p=0.9"][0]
    cached = study["curves"]["p=0.9"][0]
    assert fresh["epoch"] == cached["epoch"]
    # float32 sums may be ordered differently with another thread count: allow a few images / memories
    assert fresh["dead_train_%"] == pytest.approx(cached["dead_train_%"], abs=0.2)
    assert fresh["train_error"] == pytest.approx(cached["train_error"], abs=0.1)
    assert fresh["test_error"] == pytest.approx(cached["test_error"], abs=0.1)
