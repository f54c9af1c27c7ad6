"""dam_utils.results_cache, and every committed result recomputed on a sample with the code as it is now.

* The committed Figs. 5, 6 and 7 caches (whatever models ``artifacts/`` holds) are refused when stale and are
  recomputed on a random sample: Fig. 5 on 200 test images, Fig. 6 on one rubbish image per class and model
  (images and confidences), Fig. 7 in full (the beta_sm fits). Each fails when the cache and the code disagree.
* On tiny models trained here: the cache round-trips; a cache made with other models is refused as stale, a
  file edited after it was written as modified, a missing one as missing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dam_utils import artifacts
from dam_utils.confidence import confidence_results
from dam_utils.deform import DeformConfig
from dam_utils.paths import artifacts_dir
from dam_utils.results_cache import (
    FIG5,
    FIG6,
    FIG7,
    ResultMissingError,
    ResultModifiedError,
    StaleResultError,
    load_confidence_results,
    load_rubbish_results,
    load_transfer_results,
    save_confidence_results,
    save_rubbish_results,
    save_transfer_results,
)
from dam_utils.rubbish import RubbishConfig
from dam_utils.train import train
from dam_utils.train_config import TrainConfig
from dam_utils.transfer import adversarial_transfer, recheck_rubbish, recheck_transfer, rubbish_transfer

#: Fig. 5: images recomputed, and the share of labels allowed to differ (float noise between batch sizes can
#: move an image that sits one small step past the boundary).
RECHECK_IMAGES = 200
RECHECK_TOLERANCE = 0.01
#: Fig. 6: a regenerated rubbish image may differ from the cached one (float16, and descents of hundreds of
#: steps in another batch size) by this relative L2 distance; confidences by this much (beta_sm = 3.2 / own
#: beta_sm, which is up to ~50 and amplifies output differences); labels in this share of the pairs.
RUBBISH_IMAGE_REL = 0.05
RUBBISH_Z_SINGLE = 0.01
RUBBISH_Z_OWN = 0.03
RUBBISH_LABELS = 0.05


def _committed(name: str):
    root = artifacts_dir()
    if name not in artifacts.read_manifest(root)["artifacts"]:
        pytest.skip(f"no cached {name} in {root}/manifest.json (compute it with `make reproduce`)")
    return root


def _models(root, n_values):
    return {n: artifacts.load_book_model(n, root=root)[0] for n in n_values}


# ---------------------------------------------------------------------------------------------------------
# The committed caches against the code
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cached_fig5_matches_the_code(mnist) -> None:
    root = _committed(FIG5)
    cached = load_transfer_results(root)  # sha256-verified, refused if the book models changed
    check = recheck_transfer(cached, _models(root, cached.n_values), mnist, n_sample=RECHECK_IMAGES, seed=0)
    assert check["disagree_fraction"] <= RECHECK_TOLERANCE, (
        f"{check['disagree']} of {check['compared']} labels differ from the cache ({check['per_cell']}): the "
        "cached Fig. 5 does not match the code. Recompute it with `make reproduce`.")
    assert check["crossed_disagree"] <= RECHECK_TOLERANCE * RECHECK_IMAGES * len(cached.n_values)
    assert check["second_disagree"] == 0
    # the table in the JSON is the table of the per-image arrays
    doc = json.loads((root / "results" / f"{FIG5}.json").read_text())
    tab = cached.table()
    for i, g in enumerate(cached.n_values):
        for j, t in enumerate(cached.n_values):
            assert doc["table"][str(g)][str(t)] == pytest.approx(tab[i, j])


@pytest.mark.slow
def test_cached_fig6_matches_the_code() -> None:
    root = _committed(FIG6)
    cached = load_rubbish_results(root)
    check = recheck_rubbish(cached, _models(root, cached.n_values), n_blocks=1)
    msg = f"the cached Fig. 6 does not match the code ({check}); recompute it with `make reproduce`"
    assert max(check["image_max_rel_dist"].values()) <= RUBBISH_IMAGE_REL, msg
    assert check["z_single_max_abs_diff"] <= RUBBISH_Z_SINGLE, msg
    assert check["z_own_max_abs_diff"] <= RUBBISH_Z_OWN, msg
    assert check["label_disagree"] <= RUBBISH_LABELS * check["compared"], msg
    # the tables in the JSON are the tables of the per-image arrays
    doc = json.loads((root / "results" / f"{FIG6}.json").read_text())
    mc = cached.mean_confidence()
    for i, g in enumerate(cached.n_values):
        for j, t in enumerate(cached.n_values):
            assert doc["mean_confidence_single"][str(g)][str(t)] == pytest.approx(mc[i, j])


@pytest.mark.slow
def test_cached_fig7_matches_the_code(mnist) -> None:
    root = _committed(FIG7)
    cached = load_confidence_results(root)
    fresh = confidence_results(_models(root, list(cached)), mnist)
    for n, r in cached.items():
        assert fresh[n]["accuracy"] == pytest.approx(r["accuracy"], abs=1e-9), n
        assert fresh[n]["beta_sm"] == pytest.approx(r["beta_sm"], rel=1e-4), n
        assert fresh[n]["mean_confidence_single"] == pytest.approx(r["mean_confidence_single"], abs=1e-3), n
        assert fresh[n]["bins"]["count"] == r["bins"]["count"], n


# ---------------------------------------------------------------------------------------------------------
# Tiny models
# ---------------------------------------------------------------------------------------------------------


def _fig5(tiny, mnist, n_images: int = 30):
    _, models, m = tiny
    torch.manual_seed(0)
    return adversarial_transfer(models, mnist, n_images, DeformConfig.smoke(max_steps=200), m=m, n_samples=4)


def test_cache_round_trip(tiny, mnist) -> None:
    root, models, m = tiny
    res = _fig5(tiny, mnist)
    save_transfer_results(res, root=root)
    back = load_transfer_results(root)
    assert back.n_values == res.n_values
    assert np.array_equal(back.predictions, res.predictions) and np.array_equal(back.crossed, res.crossed)
    assert np.allclose(back.table(), res.table())
    assert back.config["models"]["2"]["sha256"] == artifacts.entry(artifacts.book_model_name(2, root), root)["sha256"]
    assert recheck_transfer(back, models, mnist, n_sample=20, seed=1)["disagree_fraction"] <= RECHECK_TOLERANCE
    r6 = rubbish_transfer(models, 2, RubbishConfig.smoke(), m=m, beta_own={2: 4.0, 3: 5.0}, seed=0,
                          samples_per_class=1)
    save_rubbish_results(r6, root=root)
    back6 = load_rubbish_results(root)
    assert np.allclose(back6.mean_confidence(), r6.mean_confidence())
    assert np.allclose(back6.mean_confidence(own=True), r6.mean_confidence(own=True))
    assert back6.beta_own == {2: 4.0, 3: 5.0}
    check = recheck_rubbish(back6, models)
    assert check["label_disagree"] == 0 and max(check["image_max_rel_dist"].values()) <= 1e-3
    r7 = confidence_results(models, mnist)
    save_confidence_results(r7, 1.0, root=root)
    assert load_confidence_results(root)[3]["beta_sm"] == pytest.approx(r7[3]["beta_sm"])


def test_stale_modified_and_missing_caches_are_refused(tiny, mnist, tmp_path) -> None:
    root = tiny[0]
    save_transfer_results(_fig5(tiny, mnist, n_images=10), root=root)
    book3 = artifacts.book_model_name(3, root)
    # a different model for n = 3 becomes the book model: the cache is stale
    other = train(TrainConfig.smoke(3, K=40, epochs=3, seed=7), mnist, progress=False)
    artifacts.save_model(other, mnist, root=root)
    with pytest.raises(StaleResultError, match=r"[Rr]ecompute"):
        load_transfer_results(root)
    load_transfer_results(root, check_models=False)  # still readable on purpose
    with artifacts._locked_manifest(root) as manifest:  # restore the original book model
        manifest["book_models"]["3"] = book3
    load_transfer_results(root)
    # a file edited after it was written: modified, not stale
    npz = root / "results" / f"{FIG5}.npz"
    saved = npz.read_bytes()
    npz.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    with pytest.raises(ResultModifiedError, match="does not match the manifest"):
        load_transfer_results(root)
    npz.write_bytes(saved)
    load_transfer_results(root)
    with pytest.raises(ResultMissingError, match=r"no cached"):
        load_transfer_results(tmp_path)
