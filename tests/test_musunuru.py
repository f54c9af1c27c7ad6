"""dam_utils.musunuru: the prototypes are one binarised training digit per class, the memory recalls its own
patterns with their labels, and every image of an attack draw was right and now fools the dense net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dam_utils.dense_net import DenseConfig, train_dense
from dam_utils.hopfield import IterativeConfig, pattern_health
from dam_utils.lbfgs import LBFGSConfig
from dam_utils.musunuru import MemoryConfig, attack_draw, build_memory, memory_labels, prototypes
from dam_utils.params import ParameterError


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
        MemoryConfig(rule="oja")


def test_attack_draw_fools_the_net(mnist) -> None:
    net, _, _ = train_dense(DenseConfig.smoke(hidden=32), mnist, progress=False)
    d = attack_draw(net, mnist, 3, np.random.default_rng(0), LBFGSConfig.smoke())
    assert d["x_adv"].shape == (3, 784) and d["x_adv"].min() >= 0 and d["x_adv"].max() <= 1
    assert (net.predict(torch.from_numpy(d["x"])).numpy() == d["label"]).all()  # right before
    assert (net.predict(torch.from_numpy(d["x_adv"])).numpy() == d["target"]).all()  # the target after
    assert (d["target"] != d["label"]).all() and int(d["attempts"]) >= 3


def test_binary_attack_and_scoring(mnist) -> None:
    from dam_utils.hopfield import binarise  # noqa: PLC0415
    from dam_utils.musunuru import binary_attack, score_draw  # noqa: PLC0415

    net, _, _ = train_dense(DenseConfig.smoke(hidden=32), mnist, progress=False)
    x = (mnist.x_test[:1] + 1) / 2
    xb = (binarise(x)[0] > 0).float()
    label = int(net.predict(xb[None]))
    adv, flips = binary_attack(net, xb, label, max_flips=300)
    assert set(adv.unique().tolist()) <= {0.0, 1.0}
    assert (adv != xb).sum() == flips <= 300 and int(net.predict(adv[None])) != label
    xi, labels = prototypes(mnist)
    w, _ = build_memory(xi, "pseudo_inverse")
    d = {"x": ((xi + 1) / 2).float().numpy(), "x_adv": ((xi + 1) / 2).float().numpy(), "label": labels.numpy()}
    s = score_draw(d, w, xi, labels)  # "adversarials" identical to the stored digits: nothing wrong, all erased
    assert s == {"n": 10.0, "wrong_adv": 0.0, "wrong_adv_frac": 0.0, "wrong_orig": 0.0, "wrong_adv_given_right": 0.0,
                 "hamming_mean": 0.0, "erased": 10.0}
