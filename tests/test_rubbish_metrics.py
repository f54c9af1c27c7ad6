"""dam_utils.rubbish_metrics: cross-classification, nearest-neighbour distances, roughness."""

from __future__ import annotations

import math

import pytest
import torch

from dam_utils import rubbish_metrics as R
from dam_utils.deform import DeformConfig, DeformResult
from dam_utils.descent import AT_CROSSING
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


def _deform_result(clean: torch.Tensor, boundary: torch.Tensor, second: list[int], crossed: list[bool],
                   behind_pred: list[int], cross_step: list[int], vanishing: list[int],
                   underflow: list[int]) -> DeformResult:
    """A hand-made DeformResult with known boundary distances, for the row functions."""
    N = len(clean)
    long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return DeformResult(
        clean=clean, top=torch.zeros(N, dtype=torch.long), second=long(second), boundary=boundary,
        behind=boundary.clone(), final=None, boundary_gap=torch.zeros(N), boundary_scale=torch.ones(N),
        behind_pred=long(behind_pred), crossed=torch.tensor(crossed), cross_step=long(cross_step),
        steps=long(cross_step).clamp_min(0), status=torch.full((N,), AT_CROSSING), final_log_objective=torch.zeros(N),
        vanishing=long(vanishing), vanishing_at_start=torch.zeros(N, dtype=torch.bool), underflow=long(underflow),
        zero_gradient=torch.zeros(N, dtype=torch.long), trace=None, config=DeformConfig(to_convergence=False), m=2,
        wall_time_s=0.0)


def test_crossing_rows_from_known_distances() -> None:
    clean = torch.zeros(4, 784)
    boundary = clean.clone()
    for i, d in enumerate((1.0, 2.0, 3.0, 100.0)):
        boundary[i, 10 + i] = d  # ||boundary - clean|| = 1, 2, 3 (and 100 for the image that failed)
    x_train = torch.zeros(2, 784)
    x_train[0, 0], x_train[1, 1] = 4.0, 8.0  # the nearest (only) training image of class 1 / class 2
    y_train = torch.tensor([1, 2])
    res = _deform_result(clean, boundary, second=[1, 1, 2, 2], crossed=[True, True, True, False],
                         behind_pred=[1, 1, 0, 2], cross_step=[3, 5, 7, -1], vanishing=[0, 2, 0, 0],
                         underflow=[0, 0, 1, 1])
    (row,) = R.crossing_rows({30: res}, x_train, y_train)
    assert row["n"] == 30 and row["images"] == 4 and row["crossed (%)"] == 75.0
    assert row["boundary distance, median"] == pytest.approx(2.0)  # of 1, 2, 3; the failure is left out
    assert row["quartiles"] == "1.5–2.5"
    assert row["÷ nearest training image of the second class"] == pytest.approx(0.375)  # of 1/4, 2/4, 3/8
    assert row["steps to cross, median"] == 5.0
    assert row["behind image labelled second choice (%)"] == pytest.approx(200 / 3)
    assert row["zero textbook gradient (images)"] == 1 and row["float64 fallback (images)"] == 2


def test_median_and_percent() -> None:
    assert R.median(torch.tensor([3.0, 1.0, 2.0])) == 2.0
    assert R.median(torch.tensor([4, 1, 3, 2])) == 2.0  # the lower middle value, as torch.median
    assert math.isnan(R.median(torch.zeros(0))) and math.isnan(R.percent(torch.zeros(0)))
    assert R.percent(torch.tensor([True, False, False, True])) == 50.0


def test_k_nearest_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(4)
    x, ref = torch.rand(9, 784, generator=g) * 2 - 1, torch.rand(70, 784, generator=g) * 2 - 1
    d, j = R.k_nearest(x, ref, 3, batch_size=4)
    full = torch.cdist(x.double(), ref.double())
    best = full.topk(3, dim=1, largest=False)
    assert torch.equal(j, best.indices)
    torch.testing.assert_close(d, best.values)
    assert d.shape == (9, 3) and torch.all(d[:, :-1] <= d[:, 1:])


def _clusters(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ten well separated classes (random +-1 patterns, 39.6 apart); 5 training and 2 test images per class
    within noise 0.1 of their pattern (nearest-training distance about 4)."""
    base = torch.randint(0, 2, (10, 784), generator=g).float() * 2 - 1
    y_train = torch.arange(50) % 10
    x_train = base[y_train] + 0.1 * torch.randn(50, 784, generator=g)
    x_test = base[torch.arange(20) % 10] + 0.1 * torch.randn(20, 784, generator=g)
    return base, x_train, y_train, x_test


def test_digit_share_needs_both_tests() -> None:
    g = torch.Generator().manual_seed(5)
    base, x_train, y_train, x_test = _clusters(g)
    images = torch.stack([
        x_train[0],  # a training 0, target 0: a digit
        x_train[0],  # the same image, target 5: near the data, but the judge says 0
        torch.rand(784, generator=g) * 2 - 1,  # uniform noise: far from the data
        base[3],  # the clean pattern of class 3, target 3: a digit
        base[4] + 0.8 * torch.randn(784, generator=g),  # speckle over a 4: the vote says 4, but it is far
    ])
    targets = torch.tensor([0, 5, 0, 3, 4])
    out = R.digit_share(images, targets, x_train, y_train, x_test, k=3)
    ref = torch.cdist(x_test.double(), x_train.double()).min(1).values  # every test image is in the reference
    assert out["threshold"] == pytest.approx(float(torch.quantile(ref, 0.99)))
    assert out["near_manifold"].tolist() == [True, True, False, True, False]
    judge = out["judge_says_target"].tolist()
    assert judge[:2] == [True, False] and judge[3:] == [True, True]
    assert out["is_digit"].tolist() == [True, False, False, True, False]
    assert out["share_%"] == 40.0 and out["near_manifold_%"] == 60.0
    assert out["nearest_distance"][0] < 1e-5
    # a stricter percentile can only lower the threshold; a subsample of the reference is drawn with the seed
    low = R.digit_share(images, targets, x_train, y_train, x_test, percentile=1.0)
    assert low["threshold"] < out["threshold"]
    sub = [R.digit_share(images, targets, x_train, y_train, x_test, n_reference=5, seed=1)["threshold"]
           for _ in range(2)]
    assert sub[0] == sub[1] and float(ref.min()) <= sub[0] <= float(ref.max())


def test_morph_measures_on_known_changes() -> None:
    means = torch.eye(10, 784)  # class c: the unit vector e_c
    clean = torch.zeros(3, 784)
    boundary = clean.clone()
    boundary[0] = 2 * (means[1] - means[0])  # straight from the top class (0) toward the second (1)
    boundary[1, 5] = 3.0  # toward class 5: unrelated to 0 -> 1
    boundary[2] = -(means[1] - means[0])  # away from the second class
    top, second = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    out = R.morph_measures(clean, boundary, top, second, means)
    f64 = torch.float64
    torch.testing.assert_close(out["cosine"], torch.tensor([1.0, 0.0, -1.0], dtype=f64))
    torch.testing.assert_close(out["distance"], torch.tensor([2 * math.sqrt(2), 3.0, math.sqrt(2)], dtype=f64))
    assert out["median_distance"] == pytest.approx(2 * math.sqrt(2)) and out["median_cosine"] == pytest.approx(0.0)
