"""dam_utils.hard_negatives: appendix B's selective-dropout grid. The split withholds exactly one pair per group;
SD with p = 1 is the control; every SD step selects ceil(p * width) units; the grid's cache round-trips, is
rechecked by re-training, and is refused when the pairs change; the committed grid is re-trained on a sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dam_utils import artifacts
from dam_utils.cnn import BaseCNN, CNNConfig, save_cnn, train_cnn
from dam_utils.hard_negatives import (
    ARMS,
    HARD_NEGATIVES,
    METRICS,
    SDConfig,
    group_keys,
    load_hard_negatives,
    recheck_hard_negatives,
    run_arm,
    save_hard_negatives,
    split_pairs,
    train_grid,
)
from dam_utils.lbfgs import LBFGSConfig
from dam_utils.lbfgs_pairs import PairsConfig, load_pairs, save_pairs
from dam_utils.params import ParameterError
from dam_utils.paths import artifacts_dir
from dam_utils.results_cache import StaleResultError


def _fake_pairs(mnist, n: int = 14, seed: int = 0) -> dict[str, np.ndarray]:
    """Pairs with the cache's fields; the 'adversarial' is the original plus clipped noise (the grid does not
    need attacks that succeed)."""
    rng = np.random.default_rng(seed)
    index = rng.choice(60000, size=n, replace=False)
    label = mnist.y_train[index].numpy()
    target = (label + rng.integers(1, 10, size=n)) % 10
    x = ((mnist.x_train[index] + 1) / 2).numpy()
    x_adv = np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1).astype(np.float32)
    z = np.zeros(n)
    return {"index": index, "label": label, "target": target, "c": z, "l2": z, "linf": z, "p_target": z,
            "solves": z.astype(int), "x_adv": x_adv, "failed": np.zeros((0, 2), np.int64)}


def test_split_withholds_one_pair_per_group() -> None:
    label = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    target = np.array([1, 1, 0, 2, 2, 9, 4, 5])
    for grouping, n_groups in (("both", 6), ("orig", 4), ("adv", 6)):
        keys = group_keys(label, target, grouping)
        val, train = split_pairs(keys, np.random.default_rng(1))
        assert len(val) == n_groups and sorted(keys[val].tolist()) == sorted(set(keys.tolist()))
        assert not set(val) & set(train) and sorted([*val, *train]) == list(range(len(label)))


def test_sd_with_p_one_is_the_control_and_counts_units(mnist) -> None:
    torch.manual_seed(0)
    base = BaseCNN().eval()
    pairs = _fake_pairs(mnist, 8)
    x = torch.from_numpy(((mnist.x_train[pairs["index"]] + 1) / 2).numpy())
    x_adv, y = torch.from_numpy(pairs["x_adv"]), torch.from_numpy(pairs["label"]).long()
    val, train = np.arange(2), np.arange(2, 8)
    control = run_arm(base, x, x_adv, y, val, train, 0.003, None, 1.0, 2, order_seed=5)
    full = run_arm(base, x, x_adv, y, val, train, 0.003, "fc", 1.0, 2, order_seed=5)
    for k in METRICS:
        assert np.array_equal(control[k], full[k]), k
    sd = run_arm(base, x, x_adv, y, val, train, 0.003, "conv2", 0.2, 2, order_seed=5)
    assert sd["steps"] == 12 and sd["selected"].sum() == 12 * math.ceil(0.2 * 64)
    assert sd["selected"].max() <= 12 and len(sd["selected"]) == 64
    assert base.conv2.weight.grad is None  # the base itself was never trained


def test_bad_config_is_refused() -> None:
    with pytest.raises(ParameterError, match="'epochs'"):
        SDConfig(epochs=0)


@pytest.mark.slow
def test_grid_round_trip_recheck_and_staleness(mnist, tmp_path) -> None:
    root = tmp_path
    ccfg = CNNConfig.smoke(n_train=500)
    net, history, wall = train_cnn(ccfg, mnist, progress=False)
    save_cnn(net, ccfg, "smoke", history, wall, mnist, root=root)
    save_pairs(_fake_pairs(mnist), PairsConfig.smoke(), LBFGSConfig.smoke(), "smoke", 1.0, root=root)
    pairs, pdoc = load_pairs(root)
    cfg = SDConfig(epochs=1, n_seeds=2, n_test=50)
    grid = train_grid(net, pairs, cfg, workers=1, progress=False)
    shape = (2, 3, 2, len(ARMS))
    assert grid["test"].shape == shape and not np.isnan(grid["test"]).any()
    assert np.isnan(grid["val_adv"][:, :, :, 1:, 1]).all() and not np.isnan(grid["val_adv"][:, :, :, 0]).any()
    assert (grid["val"].sum(-1)[:, 1] == len(np.unique(pairs["label"]))).all()
    save_hard_negatives(grid, cfg, pdoc, "smoke", 1.0, 1, root=root)
    back, doc = load_hard_negatives(root)
    assert all(np.array_equal(back[k], grid[k], equal_nan=True) for k in METRICS)
    for r in recheck_hard_negatives(back, doc, [(1, "orig", 0.003, 5), (0, "both", 0.001, 0)], epochs=1, root=root):
        assert r["val_same"]
        for k in METRICS:
            assert np.array_equal(r["cached"][k], r["recomputed"][k], equal_nan=True), (r["cell"], k)
    save_pairs(_fake_pairs(mnist, seed=1), PairsConfig.smoke(), LBFGSConfig.smoke(), "smoke", 1.0, root=root)
    with pytest.raises(StaleResultError, match="other pairs"):
        load_hard_negatives(root)


@pytest.mark.slow
def test_committed_grid_matches_the_code() -> None:
    if HARD_NEGATIVES not in artifacts.read_manifest(artifacts_dir())["artifacts"]:
        pytest.skip("no cached selective-dropout grid (python -m dam_utils.hard_negatives)")
    grid, doc = load_hard_negatives()
    rng = np.random.default_rng()  # a different sample of cells at every run
    cfg = SDConfig(**doc["config"]["grid"])
    cells = [(int(rng.integers(cfg.n_seeds)) + cfg.first_seed, "both", float(rng.choice([0.001, 0.003])), int(a))
             for a in (0, rng.integers(1, 4), rng.integers(4, 7))]
    for r in recheck_hard_negatives(grid, doc, cells, epochs=2):
        assert r["val_same"], r["cell"]
        for k in METRICS:
            assert np.array_equal(r["cached"][k], r["recomputed"][k]), (r["cell"], k, r["cached"][k],
                                                                        r["recomputed"][k])
