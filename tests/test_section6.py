"""dam_utils.section6 (chapter 5): the committed cache recomputed on a sample with the code as it is now, the
cache's round trip and its refusal once a model changes, the presets, and the section-6 verdict rule."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dam_utils import claims
from dam_utils import section6_tables as tables
from dam_utils.artifacts import read_manifest
from dam_utils.params import ParameterError
from dam_utils.paths import artifacts_dir
from dam_utils.results_cache import StaleResultError, check_fresh
from dam_utils.section6 import (
    RESULT,
    Section6Config,
    chapter_results,
    compute_section6,
    contestants,
    load_section6,
    recheck_section6,
    save_section6,
)

#: Share of recomputed labels allowed to differ (an image one small step past a boundary can move with the
#: batch size's float rounding), the largest difference of the guard's outputs, and of its confidences (its
#: beta_sm ~ 40 amplifies float32 rounding of the outputs; a few 1e-6 between batch sizes).
RECHECK_TOLERANCE = 0.01
OUTPUT_TOLERANCE = 1e-3
CONF_TOLERANCE = 1e-4


def _cache():
    if RESULT not in read_manifest()["artifacts"]:
        pytest.skip("no cached chapter-5 results (run `python -m dam_utils.section6`)")
    return load_section6()


@pytest.mark.slow
def test_cached_chapter5_matches_the_code(mnist) -> None:
    res = _cache()
    models, _ = contestants(res.config["profile"], mnist)
    assert list(models) == res.keys
    r = recheck_section6(res, models, mnist, n_sample=30, n_whitebox=3, seed=1)
    t = r["transfer"]
    assert t["disagree_fraction"] <= RECHECK_TOLERANCE, t["per_cell"]
    assert t["outputs_max_abs_diff"] <= OUTPUT_TOLERANCE
    assert r["fgsm"]["disagree"] <= RECHECK_TOLERANCE * r["fgsm"]["compared"]
    assert r["guard_clean"]["label_disagree"] == 0 and r["guard_clean"]["max_abs_conf_diff"] <= CONF_TOLERANCE
    assert r["threshold_abs_diff"] <= CONF_TOLERANCE
    for w in r["whitebox"].values():
        assert w["success_disagree"] == 0, w


def test_cache_is_fresh_and_refused_once_a_network_changes(tmp_path) -> None:
    res = _cache()
    records = res.config["models"]
    assert {k for k in records} == set(res.keys)
    shutil.copy(artifacts_dir() / "manifest.json", tmp_path / "manifest.json")
    check_fresh(records, RESULT, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["polynets"]["ce_n1"] = "polynet_ce_n1_other"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StaleResultError, match="net CE n=1"):
        check_fresh(records, RESULT, tmp_path)


@pytest.fixture(scope="module")
def smoke(mnist):
    models, excluded = contestants("smoke", mnist)
    assert not excluded
    return models, compute_section6(models, mnist, "smoke")


def test_smoke_run_round_trips_through_the_cache(smoke, mnist, tmp_path) -> None:
    models, res = smoke
    shutil.copy(artifacts_dir() / "manifest.json", tmp_path / "manifest.json")
    save_section6(res, models, root=tmp_path)
    back = load_section6(tmp_path)
    assert back.keys == res.keys
    assert np.array_equal(back.transfer.predictions, res.transfer.predictions)
    assert np.array_equal(back.fgsm_predictions, res.fgsm_predictions)
    assert np.allclose(back.guard_conf("net CE n=1"), res.guard_conf("net CE n=1"), atol=1e-5)
    assert back.threshold == res.threshold and np.array_equal(back.guard_clean_conf, res.guard_clean_conf)
    for k in res.whitebox:
        assert np.array_equal(back.whitebox[k]["success"], res.whitebox[k]["success"])
    def nan_as_none(rows):  # JSON stores NaN (a median over no crossing) as null
        return [{k: None if isinstance(v, float) and v != v else v for k, v in r.items()} for r in rows]

    assert nan_as_none(tables.robustness_rows(back)) == nan_as_none(tables.robustness_rows(res))


def test_smoke_results_are_consistent(smoke, mnist) -> None:
    _, res = smoke
    G, N = len(res.keys), res.transfer.n_images
    assert res.fgsm_predictions.shape == (len(res.fgsm_eps), G, G, N)
    models = smoke[0]
    for k in res.keys:  # the recorded clean error is the model's own, on the whole test set
        assert res.info[k]["test_error"] == pytest.approx(models[k].model.error_rate(mnist.x_test, mnist.y_test))
    assert 0.0 <= res.threshold <= 1.0
    for rows in (tables.pair_rows(res, a) for a in res.config["accurate"]):
        for r in rows:
            assert r["rejected"] + r["correct"] + r["wrong"] == pytest.approx(100.0)


def test_bad_parameters_fail_before_any_work(mnist) -> None:
    with pytest.raises(ParameterError, match="whitebox_images"):
        Section6Config.cpu(whitebox_images=0)
    with pytest.raises(ParameterError, match="reject_pct"):
        Section6Config.cpu(reject_pct=80.0)
    with pytest.raises(ValueError, match="n_images"):
        chapter_results("cpu", False, mnist, n_images=100)


def test_sec6_rule() -> None:
    assert claims.sec6_better("x", 10.0, 10.0 + claims.SEC6_MARGIN_PP + 0.1).state == "holds"
    assert claims.sec6_better("x", 10.0, 10.0 + claims.SEC6_MARGIN_PP).state == "does not hold"
    assert claims.sec6_better("x", 30.0, 10.0).ours == pytest.approx(-20.0)
    assert claims.sec6_better("x", None, 1.0).state == claims.NOT_COMPUTED
    assert claims.detector_auc("x", claims.DETECT_AUC_MIN).holds
    assert not claims.pair_stops("x", claims.PAIR_WRONG_MAX + 1).holds
