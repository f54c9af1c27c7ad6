"""dam_utils.lbfgs_pairs: appendix B's original/adversarial pairs: every accepted pair is a correctly classified
training image pushed to a different target that the CNN now predicts; the cache round-trips, is refused when the
CNN changes, and the committed cache is re-attacked on a sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dam_utils import artifacts
from dam_utils.cnn import CNNConfig, save_cnn, train_cnn
from dam_utils.lbfgs import LBFGSConfig
from dam_utils.lbfgs_pairs import PAIRS, PairsConfig, adversarial_pairs, load_pairs, recheck_pairs, save_pairs
from dam_utils.paths import artifacts_dir
from dam_utils.results_cache import StaleResultError


@pytest.fixture(scope="module")
def tiny(mnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    cfg = CNNConfig.smoke(n_train=5000)
    net, history, wall = train_cnn(cfg, mnist, progress=False)
    save_cnn(net, cfg, "smoke", history, wall, mnist, root=root)
    return root, net


@pytest.mark.slow
def test_pairs_round_trip_recheck_and_staleness(tiny, mnist) -> None:
    root, net = tiny
    cfg, lcfg = PairsConfig.smoke(n_pairs=3), LBFGSConfig.smoke()
    pairs = adversarial_pairs(net, mnist, cfg, lcfg, progress=False)
    assert len(pairs["index"]) == 3 and pairs["x_adv"].shape == (3, 784)
    x01 = (mnist.x_train[pairs["index"]] + 1) / 2
    assert (net.predict(x01).numpy() == pairs["label"]).all()  # sources are correctly classified
    assert (pairs["label"] == mnist.y_train[pairs["index"]].numpy()).all() and (pairs["target"] != pairs["label"]).all()
    assert (net.predict(torch.from_numpy(pairs["x_adv"])).numpy() == pairs["target"]).all()
    assert pairs["x_adv"].min() >= 0 and pairs["x_adv"].max() <= 1
    assert np.allclose(pairs["l2"], np.linalg.norm(pairs["x_adv"] - x01.numpy(), axis=1), rtol=1e-4)
    save_pairs(pairs, cfg, lcfg, "smoke", 1.0, root=root)
    back, doc = load_pairs(root)
    assert np.array_equal(back["x_adv"], pairs["x_adv"]) and doc["n_pairs"] == 3
    check = recheck_pairs(back, doc, n_sample=2, root=root)
    assert check["checked"] == 2 and check["mismatches"] == 0 and check["max_abs"] <= 1e-6
    other, h, w = train_cnn(CNNConfig.smoke(n_train=500, seed=3), mnist, progress=False)
    save_cnn(other, CNNConfig.smoke(n_train=500, seed=3), "smoke", h, w, mnist, root=root)
    with pytest.raises(StaleResultError):
        load_pairs(root)


@pytest.mark.slow
def test_committed_pairs_match_the_code() -> None:
    if PAIRS not in artifacts.read_manifest(artifacts_dir())["artifacts"]:
        pytest.skip("no cached L-BFGS pairs (python -m dam_utils.lbfgs_pairs)")
    pairs, doc = load_pairs()
    assert len(pairs["index"]) == doc["config"]["pairs"]["n_pairs"]
    check = recheck_pairs(pairs, doc, n_sample=2, seed=1)
    assert check["mismatches"] == 0 and check["max_abs"] <= 1e-5, check
