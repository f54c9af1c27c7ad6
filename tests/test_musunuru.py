"""dam_utils.musunuru: the prototypes are one binarised training digit per class, the memory recalls its own
patterns with their labels, every image of an attack draw was right and now fools the dense net, the binary-space
attack survives the threshold, FGSM takes the smallest step that fools; the draws' cache round-trips, is refused
when the dense net changes, and the committed caches are recomputed on a sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dam_utils.dense_net import DenseConfig, permuted_copies, save_dense, train_dense
from dam_utils.hopfield import IterativeConfig, binarise, pattern_health
from dam_utils.lbfgs import LBFGSConfig
from dam_utils.musunuru import (
    FGSM_EPS,
    DrawsConfig,
    attack_draw,
    binary_attack,
    build_memory,
    fgsm_minimal,
    load_copies,
    load_draws,
    memory_labels,
    prototypes,
    recheck_draws,
    run_draws,
    save_draws,
)
from dam_utils.params import ParameterError
from dam_utils.results_cache import StaleResultError


def test_prototypes_and_recall_of_the_stored_digits(mnist) -> None:
    xi, labels = prototypes(mnist, per_class=2)
    assert xi.shape == (20, 784) and set(xi.unique().tolist()) == {-1.0, 1.0}
    assert labels.tolist() == [c for c in range(10) for _ in range(2)]
    hebb, _ = build_memory(xi[::2], "hebbian")  # one digit per class
    w, history = build_memory(xi[::2], "iterative", IterativeConfig(samples=784, max_iter=5))
    # digits are strongly correlated: Hebb leaves many unstable bits, the iterative rule removes most of them
    assert pattern_health(w, xi[::2])["unstable"].sum() < pattern_health(hebb, xi[::2])["unstable"].sum() / 2
    assert len(history) >= 1 and "w" in history[0]
    w, _ = build_memory(xi, "pseudo_inverse")
    got, states = memory_labels(w, xi, labels, (xi + 1) / 2)  # the stored digits themselves, as images
    assert torch.equal(got, labels) and torch.equal(states, xi)
    with pytest.raises(ParameterError, match="'rule'"):
        build_memory(xi, "oja")


def test_attack_draw_fools_the_net(mnist) -> None:
    net, _, _ = train_dense(DenseConfig.smoke(hidden=32), mnist, progress=False)
    d = attack_draw(net, mnist, 3, np.random.default_rng(0), LBFGSConfig.smoke())
    assert d["x_adv"].shape == (3, 784) and d["x_adv"].min() >= 0 and d["x_adv"].max() <= 1
    assert (net.predict(torch.from_numpy(d["x"])).numpy() == d["label"]).all()  # right before
    assert (net.predict(torch.from_numpy(d["x_adv"])).numpy() == d["target"]).all()  # the target after
    assert (d["target"] != d["label"]).all() and int(d["attempts"]) >= 3


def test_binary_attack_survives_the_threshold(mnist) -> None:
    net, _, _ = train_dense(DenseConfig.smoke(hidden=32), mnist, progress=False)
    x = (mnist.x_test[:1] + 1) / 2
    xb = (binarise(x)[0] > 0).float()
    label = int(net.predict(xb[None]))
    adv, flips = binary_attack(net, xb, label, max_flips=300)
    assert set(adv.unique().tolist()) <= {0.0, 1.0}  # still black and white: binarisation leaves it alone
    assert (adv != xb).sum() == flips <= 300 and int(net.predict(adv[None])) != label
    assert torch.equal((binarise(adv[None])[0] > 0).float(), adv)


def test_fgsm_minimal_takes_the_smallest_step(mnist) -> None:
    net, _, _ = train_dense(DenseConfig.smoke(hidden=32), mnist, progress=False)
    x, y = (mnist.x_test[:40] + 1) / 2, mnist.y_test[:40]
    right = net.predict(x) == y
    x, y = x[right], y[right]
    adv, eps = fgsm_minimal(net, x, y)
    fooled = ~np.isnan(eps)
    assert fooled.any() and set(eps[fooled].tolist()) <= set(FGSM_EPS)
    assert (net.predict(adv[torch.from_numpy(fooled)]) != y[torch.from_numpy(fooled)]).all()
    assert torch.equal(adv[torch.from_numpy(~fooled)], x[torch.from_numpy(~fooled)])  # unfooled: unchanged
    for i in np.flatnonzero(fooled):
        d = (adv[i] - x[i]).abs().max()
        assert d <= eps[i] + 1e-6  # a step of eps in every pixel, clipped to [0, 1]
        smaller = [e for e in FGSM_EPS if e < eps[i]]
        if smaller:  # the next smaller step did not fool the net
            _, used = fgsm_minimal(net, x[i : i + 1], y[i : i + 1], tuple(smaller))
            assert np.isnan(used[0])


def test_draws_round_trip_recheck_and_staleness(mnist, tmp_path) -> None:
    cfg = DenseConfig.smoke(hidden=32)
    net, history, wall = train_dense(cfg, mnist, progress=False)
    save_dense(net, cfg, "smoke", history, wall, mnist, root=tmp_path)
    dcfg, lcfg = DrawsConfig.smoke(draws=2, n_images=2), LBFGSConfig.smoke()
    draws = run_draws(net, mnist, dcfg, lcfg, progress=False)
    assert draws["x_adv"].shape == (4, 784) and draws["draw"].tolist() == [0, 0, 1, 1]
    assert len(draws["attempts"]) == 2 and draws["x_bin_adv"].dtype == np.uint8
    save_draws(draws, dcfg, lcfg, "smoke", 1.0, root=tmp_path)
    back, doc = load_draws(tmp_path)
    assert all(np.array_equal(back[k], draws[k], equal_nan=True) for k in draws)
    check = recheck_draws(back, doc, n_sample=2, root=tmp_path)
    assert check == {"checked": 2, "mismatches": 0, "max_abs": 0.0}
    other, h, w = train_dense(DenseConfig.smoke(hidden=32, seed=4), mnist, progress=False)
    save_dense(other, DenseConfig.smoke(hidden=32, seed=4), "smoke", h, w, mnist, root=tmp_path)
    with pytest.raises(StaleResultError):
        load_draws(tmp_path)


@pytest.mark.slow
def test_committed_draws_and_copies_match_the_code(mnist) -> None:
    """Every attack of three random cached images re-run exactly; the first permuted copy re-trained."""
    draws, doc = load_draws()
    cfg = DrawsConfig(**doc["config"]["draws"])
    assert len(draws["index"]) == cfg.draws * cfg.n_images and len(draws["attempts"]) == cfg.draws
    check = recheck_draws(draws, doc, n_sample=3, seed=1)
    assert check["mismatches"] == 0 and check["max_abs"] <= 1e-5, check
    copies, cdoc = load_copies()
    again = permuted_copies(DenseConfig(**cdoc["config"]["dense"]), mnist, 1, progress=False)
    assert again["reference_inversions_bias"] == cdoc["reference_inversions_bias"]
    assert again["inversions_bias"][0] == copies["inversions_bias"][0]
    assert abs(again["max_abs"][0] - copies["max_abs"][0]) <= 1e-6
