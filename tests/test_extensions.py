"""dam_utils.extensions and extensions_report (chapter 6): every committed part recomputed on a sample with the code
as it is now, each part refused once a model it used changes, a smoke part's round trip through the cache, and the
rules of the chapter's verdicts."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from dam_utils import claims
from dam_utils import extensions_report as rep
from dam_utils.artifacts import read_manifest
from dam_utils.extensions import (
    PARTS,
    ExtensionsConfig,
    compute_part,
    load_part,
    part_data,
    part_models,
    recheck_part,
    result_name,
    save_part,
)
from dam_utils.params import ParameterError
from dam_utils.paths import artifacts_dir
from dam_utils.results_cache import StaleResultError, check_fresh

#: Share of recomputed labels allowed to differ (an image one small step past a boundary can move with the batch
#: size's float rounding); chapter 5 uses the same.
RECHECK_TOLERANCE = 0.01


def _cached(part: str):
    if result_name(part) not in read_manifest()["artifacts"]:
        pytest.skip(f"no cached chapter-6 part {part!r} (run `python -m dam_utils.extensions`)")
    return load_part(part)


@pytest.mark.slow
@pytest.mark.parametrize("part", PARTS)
def test_cached_part_matches_the_code(part: str) -> None:
    res = _cached(part)
    data = part_data(part)
    ms = part_models(part, res.config["profile"], data)
    assert list(ms.models) == res.keys
    r = recheck_part(res, ms, data, n_sample=4, seed=2)
    assert r["disagree_fraction"] <= RECHECK_TOLERANCE, r["per_cell"]
    assert r["crossed_disagree"] == 0
    assert r["fgsm_disagree"] <= RECHECK_TOLERANCE * r["fgsm_compared"]
    assert r["fgsm_zero_disagree"] == 0
    # the whole clean test set: each model's recorded labels, and the error its row reports
    for i, k in enumerate(res.keys):
        pred = ms.models[k].predict(data.x_test).numpy()
        assert (pred != res.clean_full[i]).sum() <= 2, k
        assert res.info[k]["test error (%)"] == pytest.approx(
            100.0 * float((res.clean_full[i] != res.labels_full).mean()), abs=0.02)


@pytest.mark.parametrize(("part", "table", "key"), [("adversarial", "adv_models", "adv_n30"),
                                                    ("features_fashion", "feature_dams", "fashion_mnist_n2"),
                                                    ("features_mnist", "cnns", "cpu"),
                                                    ("fashion", "fashion_models", "30")])
def test_part_is_fresh_and_refused_once_a_model_changes(part: str, table: str, key: str, tmp_path) -> None:
    res = _cached(part)
    records = res.config["models"]
    assert set(records) == set(res.keys)
    shutil.copy(artifacts_dir() / "manifest.json", tmp_path / "manifest.json")
    check_fresh(records, result_name(part), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest[table][key] = "some_other_model"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StaleResultError):
        check_fresh(records, result_name(part), tmp_path)


def test_smoke_part_round_trips_through_the_cache(tmp_path) -> None:
    data = part_data("fashion")
    ms = part_models("fashion", "smoke", data)
    assert ms.records is None and set(ms.models) == {"DAM n=2", "DAM n=30"}
    res = compute_part("fashion", ms, data, "smoke")
    assert res.transfer.n_images == ExtensionsConfig.smoke().for_part("fashion")
    assert res.fgsm_predictions.shape == (2, len(res.fgsm_eps), res.transfer.n_images)
    assert res.clean_full.shape == (2, 10000) and res.transfer.distances.shape == (2, res.transfer.n_images)
    crossed = res.transfer.crossed
    assert np.isnan(res.transfer.distances[~crossed]).all() and (res.transfer.distances[crossed] > 0).all()
    save_part(res, {}, root=tmp_path)
    back = load_part("fashion", tmp_path, check_models=False)
    assert back.keys == res.keys and back.info == res.info
    assert np.array_equal(back.transfer.predictions, res.transfer.predictions)
    assert np.array_equal(back.fgsm_predictions, res.fgsm_predictions)
    assert np.array_equal(back.clean_full, res.clean_full) and np.array_equal(back.labels_full, res.labels_full)
    assert np.allclose(back.transfer.distances, res.transfer.distances, equal_nan=True)
    assert rep.model_rows(back)[0]["model"] == "DAM n=2"


def test_bad_parameters_fail_by_name() -> None:
    with pytest.raises(ParameterError, match="n_images"):
        ExtensionsConfig.cpu(n_images=0)
    with pytest.raises(ParameterError, match="n_images_other"):
        ExtensionsConfig.cpu(n_images_other=10001)
    with pytest.raises(ValueError, match="part"):
        part_models("imagenet", "smoke", part_data("fashion"))


def test_mcnemar_counts_the_discordant_images() -> None:
    fake = SimpleNamespace(keys=["a", "b"], labels_full=np.zeros(100, np.int8), clean_full=np.zeros((2, 100), np.int8))
    fake.clean_full[0, :3] = 1  # a wrong on 3 images
    fake.clean_full[1, :20] = 1  # b wrong on 20, including a's 3
    r = rep.mcnemar(fake, "a", "b")  # type: ignore[arg-type]
    assert (r["only_a"], r["only_b"]) == (17, 0)
    assert r["p_value"] == pytest.approx(2 * 0.5**17)


def test_chapter6_rules() -> None:
    gain = claims.EXT_DISTANCE_GAIN_PCT
    assert claims.adv_more_robust(2, 2.0 * (1 + gain / 100) + 1e-6, 2.0, 1.9).state == "holds"
    assert claims.adv_more_robust(2, 2.0 * (1 + gain / 100) - 1e-6, 2.0, 1.9).state == "does not hold"
    assert claims.adv_more_robust(2, 3.0, 2.0, 2.9).ours == pytest.approx(100 * (3.0 / 2.9 - 1))
    assert claims.adv_more_robust(2, None, 2.0, 2.0).state == claims.NOT_COMPUTED
    assert claims.adv_more_accurate(2, 1.0, 1.5, 1.4, 0.01).state == "holds"
    assert claims.adv_more_accurate(2, 1.0, 1.5, 1.4, 0.2).state == "does not hold"
    assert claims.adv_more_accurate(2, 1.0, 0.9, 1.4, 0.01).state == "does not hold"
    assert claims.adv_more_accurate(2, 1.0, 1.5, 1.4, 0.01).ours == pytest.approx(0.4)
    assert claims.feature_head("x", 1.0 + claims.TEST_ERROR_PP - 1e-9, 1.0).state == "holds"
    assert claims.feature_head("x", 1.01 + claims.TEST_ERROR_PP, 1.0).state == "does not hold"
