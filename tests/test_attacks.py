"""Attacks of sections 3-4: stable objectives, gradient direction, rubbish images, boundary deformations."""

from __future__ import annotations

import math

import pytest
import torch

from dam_utils import attacks as A
from dam_utils.model import DAM
from dam_utils.params import ParameterError


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These are many tiny tensor ops: one intra-op thread is faster than a pool (and no oversubscription
    while other jobs share the CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist():
    from dam_utils.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="module")
def small_model(mnist) -> DAM:
    """A DAM_3 with K = 100 trained for 100 minibatches (~2 s, ~10 % test error): a real decision boundary."""
    from dam_utils.train import TrainConfig, train

    cfg = TrainConfig.smoke(3, K=100, epochs=10, batches_per_epoch=10, ramp_epochs=0, T_i=30.0, T_f=30.0,
                            init_mean=0.0, init_std=0.1)
    model = train(cfg, mnist, progress=False, eval_every=0).model
    assert model.error_rate(mnist.x_test[:1000], mnist.y_test[:1000]) < 25.0
    return model


def _saturated(model: DAM, dtype: torch.dtype = torch.float32) -> DAM:
    """The same classifier at T / 10: D is 1000 times larger (|D| in the hundreds), tanh saturates."""
    return DAM(model.xi.to(dtype), model.xc.to(dtype), model.n, model.T / 10)


def _double(model: DAM) -> DAM:
    return DAM(model.xi.double(), model.xc.double(), model.n, model.T)


# --- objectives -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 30])
def test_log_objective_matches_direct_formula(m: int) -> None:
    g = torch.Generator().manual_seed(0)
    D = torch.randn(50, 10, generator=g, dtype=torch.float64) * 1.5
    alpha = torch.randint(0, 10, (50,), generator=g)
    direct = torch.log(((torch.tanh(D) - A.targets(alpha, D)) ** (2 * m)).sum(1))
    torch.testing.assert_close(A.log_objective(D, alpha, m), direct, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(A.naive_objective(D, alpha, m).log(), direct, rtol=1e-12, atol=1e-12)


def test_log_objective_is_finite_where_the_direct_formula_underflows() -> None:
    D = torch.full((2, 10), -800.0)
    D[:, 3] = 800.0
    naive = A.naive_objective(D, 3, 30)
    assert (naive == 0).all()  # log C = -inf the direct way
    stable = A.log_objective(D, 3, 30)
    # every |Y - t| = 2 / (1 + e^1600) ~ 2 e^-1600: log C = log 10 + 60 (log 2 - 1600)
    expected = math.log(10) + 60 * (math.log(2) - 1600)
    torch.testing.assert_close(stable, torch.full((2,), expected), rtol=1e-6, atol=0.0)


def test_objective_weights_match_autograd() -> None:
    g = torch.Generator().manual_seed(1)
    D = (torch.randn(20, 10, generator=g, dtype=torch.float64) * 1.2).requires_grad_(True)
    alpha = torch.arange(20) % 10
    (w_auto,) = torch.autograd.grad(A.naive_objective(D, alpha, 3).sum(), D)
    logw, sign = A.log_objective_weights(D.detach(), alpha, 3)
    torch.testing.assert_close(sign * logw.exp(), w_auto, rtol=1e-10, atol=1e-300)


# --- gradient direction -----------------------------------------------------------------------------------


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.mark.parametrize("m", [2, 3, 30])
def test_stable_direction_equals_naive_direction_float64(small_model: DAM, mnist, m: int) -> None:
    model = _double(small_model)
    v = mnist.x_test[:40].double()
    alpha = torch.arange(40) % 10
    naive = A.naive_gradient(model, v, alpha, m)
    stable, _ = A.objective_gradient(model, v, alpha, m)
    ok = (naive != 0).any(1)
    assert ok.sum() >= 30
    cos = _cosine(naive[ok], stable[ok])
    assert torch.all(cos > 1 - 1e-10), cos.min()


def test_stable_direction_survives_where_naive_gradient_underflows(small_model: DAM, mnist) -> None:
    model = _saturated(small_model)
    v = mnist.x_test[:30]
    alpha = model.predict(v)  # own class: every output saturated at its target
    D = model.energy_difference(v)
    assert D.abs().min() > 20
    vanished = A.naive_gradient_vanishes(model, v, alpha, 3)
    assert vanished.all()
    assert torch.equal(A.naive_weights_vanish(D, alpha, 3), vanished)
    g, _ = A.objective_gradient(model, v, alpha, 3)
    assert torch.isfinite(g).all() and (g.abs().amax(1) > 0).all()
    # it is a descent direction: a small step along -u lowers log C for every image
    before = A.log_objective(D, alpha, 3)
    after = A.log_objective(model.energy_difference(v - 0.05 * A.unit(g)), alpha, 3)
    assert torch.all(after < before)
    # and the same direction as the float64 stable gradient
    g64, _ = A.objective_gradient(_double(model), v.double(), alpha, 3)
    assert torch.all(_cosine(g.double(), g64) > 1 - 1e-4)


def test_vanishing_detector_separates_saturated_from_healthy_images(small_model: DAM, mnist) -> None:
    v = mnist.x_test[:20]
    alpha = torch.arange(20) % 10
    healthy = A.naive_gradient_vanishes(small_model, v, alpha, 3)
    assert not healthy.any()
    sat = _saturated(small_model)
    own = sat.predict(v)
    assert A.naive_gradient_vanishes(sat, v, own, 3).all()
    assert A.naive_weights_vanish(sat.energy_difference(v), own, 3).all()


def test_unit_vector_is_safe_for_tiny_and_zero_rows() -> None:
    g = torch.zeros(3, 784)
    g[0, :5] = 1e-44  # subnormal float32: the plain norm underflows to 0
    g[1] = 2.0
    u = A.unit(g)
    torch.testing.assert_close(u[:2].norm(dim=1), torch.ones(2))
    assert (u[2] == 0).all()


# --- rubbish images (section 3) ----------------------------------------------------------------------------


def test_rubbish_lowers_the_objective_and_stays_in_the_box(small_model: DAM) -> None:
    cfg = A.RubbishConfig.smoke(max_steps=60, patience=20, eps=0.2)
    res = A.generate_rubbish(small_model, 3, 2, cfg, seed=0)
    assert res.images.shape == (20, 784) and res.target.tolist() == list(range(10)) * 2
    assert torch.equal(res.start[0], res.start[9])  # shared noise: one seed -> 10 classes
    assert res.images.min() >= -1 and res.images.max() <= 1
    assert torch.all(res.log_objective < res.start_log_objective - 0.5)
    assert torch.all(res.steps <= cfg.max_steps)
    assert (small_model.predict(res.images) == res.target).float().mean() >= 0.9
    s = res.summary()
    assert s["images"] == 20 and s["converged_tol"] + s["plateau"] + s["max_steps"] == 20
    # the noise really has std noise_std (before clipping: 0.16 % of pixels are clipped)
    assert abs(res.start.std().item() - math.sqrt(0.1)) < 0.02


def test_rubbish_without_clipping_may_leave_the_box(small_model: DAM) -> None:
    res = A.generate_rubbish(small_model, 3, 1, A.RubbishConfig.smoke(max_steps=40, clip=False, eps=0.5))
    assert res.images.abs().max() > 1


def test_float64_fallback_moves_images_where_float32_underflows(mnist) -> None:
    # n = 30 at a high temperature: relu(x / T)^29 of a noise image is far below the float32 range
    idx = torch.cat([torch.nonzero(mnist.y_train == c).squeeze(1)[:5] for c in range(10)])
    xi = mnist.x_train[idx]
    xc = -torch.ones(50, 10)
    xc[torch.arange(50), mnist.y_train[idx]] = 1.0
    model = DAM(xi, xc, 30, 3000.0)
    start = A.noise_images(10, 0.1, 0)  # xi.v small: every relu argument ~ 8 > 0, (8 / 3000)^29 ~ 1e-74
    on = A.generate_rubbish(model, 30, 1, A.RubbishConfig.smoke(max_steps=5), start=start)
    no64 = A.RubbishConfig.smoke(max_steps=5, float64_fallback=False)
    off = A.generate_rubbish(model, 30, 1, no64, start=start)
    assert (on.underflow > 0).all() and (on.zero_gradient == 0).all()
    assert (on.images - start).norm(dim=1).min() > 0.1  # moved (5 steps of 0.1, not all in one direction)
    assert (off.zero_gradient > 0).all() and torch.equal(off.images, start)  # reported, not hidden


# --- decision-boundary deformations (section 4) -------------------------------------------------------


@pytest.fixture(scope="module")
def deformed(small_model: DAM, mnist) -> A.DeformResult:
    cfg = A.DeformConfig(eps=0.15, max_steps=200, patience=20)
    return A.deform(small_model, mnist.x_test[:24], 3, cfg, trace=3, snapshot_every=5)


def test_deform_boundary_image_lies_on_the_boundary(small_model: DAM, deformed: A.DeformResult) -> None:
    res, cfg = deformed, deformed.config
    c = res.crossed
    assert c.sum() >= 22, res.summary()
    D = small_model.energy_difference(res.boundary[c])
    r = torch.arange(int(c.sum()))
    dt, ds = D[r, res.top[c]], D[r, res.second[c]]
    tol = cfg.boundary_atol + cfg.boundary_rtol * torch.maximum(dt.abs(), ds.abs())
    assert torch.all((dt - ds).abs() <= tol + 1e-6)
    torch.testing.assert_close(res.boundary_gap[c], dt - ds, rtol=1e-4, atol=1e-5)
    # C^top = C^second there too (the stable objectives, no saturation at this scale)
    torch.testing.assert_close(A.log_objective(D, res.top[c], 3), A.log_objective(D, res.second[c], 3),
                               rtol=1e-3, atol=1e-3)
    # the boundary lies between the clean image and the behind image, at most eps before the latter
    assert torch.all(res.boundary_distance()[c] <= res.behind_distance()[c] + 1e-4)
    assert torch.all((res.behind[c] - res.boundary[c]).norm(dim=1) <= cfg.eps + 1e-4)


def test_deform_behind_image_is_the_second_choice(small_model: DAM, deformed: A.DeformResult) -> None:
    res = deformed
    c = res.crossed
    D = small_model.energy_difference(res.behind[c])
    r = torch.arange(int(c.sum()))
    assert torch.all(D[r, res.second[c]] > D[r, res.top[c]])  # past the top/second boundary: always
    assert torch.equal(D.argmax(1), res.behind_pred[c])
    assert res.behind_is_second[c].float().mean() >= 0.9  # a third class can win only rarely
    assert torch.equal(res.top, small_model.predict(res.clean))
    assert torch.all(res.cross_step[c] >= 1) and torch.all(res.cross_step[~c] == -1)


def test_deform_final_images_trace_and_box(small_model: DAM, deformed: A.DeformResult) -> None:
    res = deformed
    assert res.final is not None and res.final.shape == (24, 784)
    for t in (res.boundary, res.behind, res.final):
        assert t.min() >= -1 and t.max() <= 1
    c = res.converged
    assert c.sum() >= 6, res.summary()  # the rest hit max_steps = 200 (status 3), never silently
    assert torch.all(res.status[res.crossed & ~c] == A.MAX_STEPS)
    assert torch.all(small_model.predict(res.final[c]) == res.second[c])
    assert torch.all(res.final_log_objective[c] < A.log_objective(
        small_model.energy_difference(res.boundary[c]), res.second[c], 3).double())
    tr = res.trace
    assert tr is not None and tr.log_c_top.shape[0] == 3 and tr.snapshots is not None
    for j in range(3):
        second = tr.log_c_second[j][~tr.log_c_second[j].isnan()]
        top = tr.log_c_top[j][~tr.log_c_top[j].isnan()]
        assert second[-1] < second[0] and top[-1] > top[0]  # Fig. 4, top panel
        k = int(res.cross_step[j])  # the crossing of the two curves
        assert top[k - 1] < second[k - 1] and top[k] > second[k]
        assert tr.gap[j][k] < 0 < tr.gap[j][k - 1]
    torch.testing.assert_close(tr.snapshots[:, 0], res.clean[:3])


def test_deform_stops_at_the_crossing_when_asked(small_model: DAM, mnist, deformed: A.DeformResult) -> None:
    cfg = A.DeformConfig(eps=0.15, max_steps=200, to_convergence=False, batch_size=10)
    res = A.deform(small_model, mnist.x_test[:24], 3, cfg)
    assert res.final is None
    c = res.crossed & deformed.crossed
    assert torch.equal(res.cross_step[c], deformed.cross_step[c])  # chunking does not change anything
    torch.testing.assert_close(res.behind[c], deformed.behind[c])
    assert torch.all(res.steps[res.crossed] == res.cross_step[res.crossed])
    assert torch.all(res.status[res.crossed] == A.AT_CROSSING)


def test_deform_reports_failures(small_model: DAM, mnist) -> None:
    res = A.deform(small_model, mnist.x_test[:10], 3, A.DeformConfig(eps=0.01, max_steps=3))
    assert res.failed.all() and res.summary()["failed"] == 10
    assert torch.all(res.cross_step == -1) and torch.all(res.status == A.MAX_STEPS)
    assert res.boundary_distance().isnan().all()


def test_generic_classifier_wrapper(mnist) -> None:
    """A plain callable returning D (here a linear layer) is attacked like a DAM."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(784, 10, generator=g) * 0.01
    clf = A.FunctionClassifier(lambda v: v @ W)
    assert isinstance(clf, A.Classifier)
    res = A.deform(clf, mnist.x_test[:8], 2, A.DeformConfig(eps=0.5, max_steps=300, to_convergence=False))
    assert res.crossed.all()
    assert torch.all(res.boundary_gap.abs() <= 1e-5 + 1e-4 * res.boundary_scale)
    rub = A.generate_rubbish(lambda v: v @ W, 2, 1, A.RubbishConfig.smoke())
    assert rub.images.shape == (10, 784)


def test_step_size_sensitivity_rows(small_model: DAM, mnist) -> None:
    cfg = A.DeformConfig(max_steps=200)
    rows = A.step_size_sensitivity(small_model, mnist.x_test[:8], 3, [0.3, 0.15], cfg,
                                   labels=mnist.y_test[:8], transfer={"self": small_model})
    assert [r["eps"] for r in rows] == [0.15, 0.3]
    assert rows[0]["median_boundary_shift"] == 0.0 and rows[0]["self_agree_%"] == 100.0
    assert rows[1]["median_boundary_shift"] < 0.1 * rows[0]["median_boundary_dist"]
    assert all(r["crossed"] + r["failed"] == 8 for r in rows)


# --- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,name,value",
    [
        (A.RubbishConfig, "eps", -0.1),
        (A.RubbishConfig, "eps", 0.0),
        (A.RubbishConfig, "max_steps", 0),
        (A.RubbishConfig, "noise_std", "0.3"),
        (A.RubbishConfig, "clip", 1),
        (A.RubbishConfig, "tol", 1.5),
        (A.DeformConfig, "eps", float("nan")),
        (A.DeformConfig, "batch_size", 2.5),
        (A.DeformConfig, "to_convergence", "yes"),
        (A.DeformConfig, "bisect_steps", -1),
    ],
)
def test_bad_config_values_raise_parameter_error(cls, name: str, value) -> None:
    with pytest.raises(ParameterError, match=f"'{name}'"):
        cls(**{name: value})


def test_presets_and_other_parameters(small_model: DAM, mnist) -> None:
    for cls in (A.RubbishConfig, A.DeformConfig):
        for profile in ("paper", "cpu", "smoke"):
            cfg = cls.preset(profile)
            assert isinstance(cfg, cls) and cfg.to_dict()["eps"] == cfg.eps
        assert cls.smoke().max_steps < cls.cpu().max_steps <= cls.paper().max_steps
        with pytest.raises(ParameterError, match="'profile'"):
            cls.preset("gpu")
    with pytest.raises(ParameterError, match="'m'"):
        A.deform(small_model, mnist.x_test[:2], 0)
    with pytest.raises(ParameterError, match="'n_per_class'"):
        A.generate_rubbish(small_model, 3, 0)
    with pytest.raises(ParameterError, match="'trace'"):
        A.deform(small_model, mnist.x_test[:2], 3, trace=[5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deform_on_cuda_matches_cpu(small_model: DAM, mnist) -> None:
    cfg = A.DeformConfig(eps=0.1, max_steps=300, to_convergence=False)
    x = mnist.x_test[:20]
    cpu = A.deform(small_model, x, 3, cfg)
    gpu = A.deform(small_model.to("cuda"), x.cuda(), 3, cfg)
    assert (cpu.cross_step == gpu.cross_step).float().mean() >= 0.9


def test_book_model_n30_boundary(mnist) -> None:
    """On the committed DAM_30 (if present): crossing images sit on the boundary, behind images are the
    second choice; no image fails."""
    from dam_utils.artifacts import ArtifactError, load_book_model

    try:
        model, entry = load_book_model(30)
    except (ArtifactError, FileNotFoundError) as exc:
        pytest.skip(f"book model n=30 not available ({exc}); commit artifacts/ to run this test")
    m = int(entry["config"]["m"])
    res = A.deform(model, mnist.x_test[:20], m, A.DeformConfig(to_convergence=False, max_steps=1000))
    assert res.crossed.all(), res.summary()
    assert (res.relative_boundary_gap() <= 1e-4 + 1e-5 / res.boundary_scale.clamp_min(1e-30)).all()
    assert res.behind_is_second.float().mean() >= 0.9
