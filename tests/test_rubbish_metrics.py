"""dam_utils.rubbish_metrics: cross-classification, nearest-neighbour distances, roughness."""

from __future__ import annotations

import math

import pytest
import torch

from dam_utils import rubbish_metrics as R
from dam_utils.model import DAM, N_CLASSES, N_PIXELS


def _model(n: int, K: int = 30, seed: int = 0) -> DAM:
    gen = torch.Generator().manual_seed(seed)
    xi = torch.rand(K, N_PIXELS, generator=gen) * 2 - 1
    return DAM(xi, torch.rand(K, N_CLASSES, generator=gen) * 2 - 1, n, 40.0)


def test_nearest_distances_match_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    x, ref = torch.rand(7, 784, generator=g), torch.rand(50, 784, generator=g)
    d, j = R.nearest_distances(x, ref, batch_size=3)
    full = torch.cdist(x.double(), ref.double())
    torch.testing.assert_close(d, full.min(1).values)
    assert torch.equal(j, full.argmin(1))
    d0, _ = R.nearest_distances(ref[:4], ref)
    assert float(d0.max()) < 1e-5


def test_class_means_and_roughness() -> None:
    x = torch.tensor([[1.0] * 784, [3.0] * 784, [-1.0] * 784])
    y = torch.tensor([0, 0, 1])
    m = R.class_means(x, y, n_classes=2)
    assert m.shape == (2, 784) and float(m[0, 0]) == 2.0 and float(m[1, 0]) == -1.0
    board = (torch.arange(28).view(-1, 1) + torch.arange(28).view(1, -1)) % 2 * 2.0 - 1.0
    r = R.roughness(torch.stack([torch.zeros(784), board.flatten()]))
    assert float(r[0]) == 0.0 and float(r[1]) == pytest.approx(2.0)


def test_cross_classification_rows() -> None:
    models = {2: _model(2, seed=2), 30: _model(30, seed=30)}
    g = torch.Generator().manual_seed(1)
    images = {n: torch.rand(20, 784, generator=g) * 2 - 1 for n in models}
    targets = {n: models[n].predict(images[n]) for n in models}  # each model's own labels
    rows = R.cross_classification(models, images, targets, beta_sm=3.2)
    assert [(r["generator"], r["classifier"]) for r in rows] == [(2, 2), (2, 30), (30, 2), (30, 30)]
    assert rows[0]["target_%"] == 100.0 and rows[3]["target_%"] == 100.0
    for r in rows:
        assert 10.0 - 1e-9 <= r["confidence_%"] <= 100.0


def test_distance_rows_reference_is_one() -> None:
    g = torch.Generator().manual_seed(2)
    x_train = torch.rand(40, 784, generator=g) * 2 - 1
    y_train = torch.arange(40) % 10
    x_test = torch.rand(10, 784, generator=g) * 2 - 1
    y_test = torch.arange(10)
    copies = x_train[:10].clone()  # training images themselves: distance 0, 1-NN label = target
    rows = R.distance_rows({"copies": copies}, {"copies": y_train[:10]}, x_train, y_train, x_test, y_test)
    assert [r["images"] for r in rows] == ["copies", "test images"]
    assert rows[0]["nearest_train"] < 1e-5 and rows[0]["nn_label_is_target_%"] == 100.0
    ref = rows[1]
    assert ref["nearest_train_rel"] == 1.0 and ref["class_mean_rel"] == 1.0 and ref["roughness_rel"] == 1.0
    assert math.isfinite(rows[0]["class_mean"]) and rows[0]["count"] == 10


def test_nearest_in_class() -> None:
    g = torch.Generator().manual_seed(3)
    x_train = torch.rand(30, 784, generator=g)
    y_train = torch.arange(30) % 3
    x = torch.rand(5, 784, generator=g)
    cls = torch.tensor([0, 1, 2, 0, 1])
    d = R.nearest_in_class(x, cls, x_train, y_train)
    for i in range(5):
        ref = torch.cdist(x[i : i + 1].double(), x_train[y_train == cls[i]].double()).min()
        assert float(d[i]) == pytest.approx(float(ref))


def test_crossing_rows_summarise_each_model(random_dam) -> None:
    from dam_utils import attacks as A

    g = torch.Generator().manual_seed(0)
    x_train = torch.rand(200, 784, generator=g) * 2 - 1
    y_train = torch.arange(200) % 10
    x = A.noise_images(6, 0.5, seed=2)
    cfg = A.DeformConfig.smoke(eps=0.5, max_steps=60, patience=10)
    results = {n: A.deform(random_dam(n, seed=n), x, 2, cfg) for n in (2, 3)}
    assert any(res.crossed.any() for res in results.values())
    rows = R.crossing_rows(results, x_train, y_train)
    assert [r["n"] for r in rows] == [2, 3]
    for r, res in zip(rows, results.values(), strict=True):
        assert r["images"] == 6
        assert r["crossed (%)"] == pytest.approx(100 * res.crossed.float().mean().item())
        if res.crossed.any():
            d = res.boundary_distance()[res.crossed].double()
            assert r["boundary distance, median"] == pytest.approx(float(d.median()))
            assert r["÷ nearest training image of the second class"] > 0
