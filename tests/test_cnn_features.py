"""dam_utils.cnn_features (chapter 6): the feature map's range and scale, the temperature rule of the feature DAM,
the image-level classifiers' gradients against plain autograd through eq. (1), and training on a feature set."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dam_utils.cnn import BaseCNN
from dam_utils.cnn_features import CNNDAM, FLUSH_MIN_N, CNNSoftmax, feature_config, feature_set
from dam_utils.model import DAM, reference_energy_difference
from dam_utils.train import init_weights, train
from dam_utils.train_config import TrainConfig


@pytest.fixture(scope="module")
def small(mnist):
    """A seeded untrained CNN whose fc unit 0 can never fire, and the first 600 training images."""
    torch.manual_seed(0)
    cnn = BaseCNN().eval()
    with torch.no_grad():
        cnn.fc.weight[0] = 0.0
        cnn.fc.bias[0] = -1.0
    data = dataclasses.replace(mnist, x_train=mnist.x_train[:600], y_train=mnist.y_train[:600],
                               x_test=mnist.x_test[:200], y_test=mnist.y_test[:200])
    fmap, fs = feature_set(cnn, data)
    return cnn, data, fmap, fs


def test_features_lie_in_the_visible_range_and_a_dead_unit_stays_off(small) -> None:
    _, data, fmap, fs = small
    assert fs.x_train.shape == (600, 200) and fs.x_test.shape == (200, 200)
    assert float(fs.x_train.min()) >= -1.0 and float(fs.x_train.max()) <= 1.0
    assert float(fmap.scale[0]) == 1.0 and bool((fs.x_train[:, 0] == -1.0).all())
    # the scale is the 99th percentile: about 1 % of the training values of a live unit sit at the top, +1
    live = fmap.scale != 1.0
    top = (fs.x_train[:, live] == 1.0).float().mean()
    assert 0.005 <= float(top) <= 0.02
    # the map applied to images reproduces the stored test features
    assert torch.allclose(fmap(data.x_test), fs.x_test, atol=1e-6)
    assert fs.name == "mnist_cnn_features" and len(fs.fingerprint()) == 4


def test_feature_temperatures_follow_the_argument_ratio(small) -> None:
    _, data, _, fs = small
    for n in (2, 30):
        cfg = feature_config("cpu", n, fs, data)
        base = TrainConfig.cpu(n)
        med = {}
        for name, x in (("f", fs.x_train), ("i", data.x_train)):
            w = init_weights(base, "cpu", x.shape[1])
            med[name] = float((x[:2000] @ w[:, : x.shape[1]].T - w[:, x.shape[1] :].sum(1)).abs().median())
        ratio = (med["f"] / med["i"]) ** ((n - 1) / n)
        assert cfg.T_i == pytest.approx(base.T_i * ratio, rel=1e-6)
        assert cfg.T_f == pytest.approx(base.T_f * ratio, rel=1e-6)
        assert cfg.dataset == fs.name and cfg.epochs == 30 and cfg.flush_denormal == (n >= FLUSH_MIN_N)


def test_cnn_dam_gradient_matches_autograd_through_eq1(small, mnist) -> None:
    fmap = small[2]
    gen = torch.Generator().manual_seed(1)
    xi = torch.rand(20, 200, generator=gen) * 2 - 1
    xc = torch.rand(20, 10, generator=gen) * 2 - 1
    model = CNNDAM(fmap, DAM(xi, xc, 3, 30.0)).as_float64()
    v = mnist.x_test[:5].double().requires_grad_(True)
    w = torch.randn(5, 10, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad((model.energy_difference(v) * w).sum(), v)
    dam = model.dam
    (g_ref,) = torch.autograd.grad(
        (reference_energy_difference(model.fmap(v), dam.xi, dam.xc, dam.n, dam.T) * w).sum(), v)
    assert g.abs().max() > 0
    assert torch.allclose(g, g_ref, rtol=1e-9, atol=1e-12)


def test_cnn_softmax_reads_the_pixels_on_the_unit_scale(small, mnist) -> None:
    cnn = small[0]
    head = CNNSoftmax(cnn)
    v = mnist.x_test[:4]
    assert head.loss == "ce" and CNNDAM(small[2], DAM(torch.zeros(2, 200), torch.zeros(2, 10), 2, 1.0)).loss == "dam"
    assert torch.equal(head.energy_difference(v), cnn((v + 1) / 2))
    assert torch.equal(head.predict(v), cnn((v + 1) / 2).argmax(1))


def test_a_dam_trains_on_a_feature_set(small) -> None:
    fs = small[3]
    cfg = TrainConfig.smoke(2, K=20, dataset=fs.name)
    res = train(cfg, fs, progress=False)
    assert res.model.xi.shape == (20, 200) and res.model.xc.shape == (20, 10)
