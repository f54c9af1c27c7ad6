"""The rectified-polynomial networks of section 6: gradients, numerics, parameters, training, storage."""

from __future__ import annotations

import shutil

import pytest
import torch

from dam_utils import claims, polynet
from dam_utils.artifacts import ArtifactError
from dam_utils.objectives import model_loss, objective_gradient
from dam_utils.params import ParameterError
from dam_utils.polynet import PolyNet, PolyNetConfig, load_polynet, loss_fn, save_polynet, train_polynet


@pytest.mark.parametrize("objective", polynet.OBJECTIVES)
@pytest.mark.parametrize("n", [1, 3, 30])
def test_gradients_match_finite_differences(n: int, objective: str) -> None:
    """float64 gradcheck of the loss w.r.t. the input and every weight (away from the relu kink)."""
    torch.manual_seed(0)
    cfg = PolyNetConfig.for_power("smoke", n, objective, hidden=6, m=3)  # (Y - t)^60 would defeat the tolerance
    net = PolyNet(n, 6, T=1.0).double()
    with torch.no_grad():  # pre-activations of order one, none near 0, so F_n is smooth where tested
        net.hidden.weight.uniform_(-0.2, 0.2)
        net.hidden.bias.fill_(0.9)
        net.out.weight.mul_(0.3)
    v = torch.rand(3, 784, dtype=torch.float64) * 0.02 - 0.01  # (3, 784)
    y = torch.tensor([0, 4, 9])
    params = [p for p in net.parameters()]

    def f(v_: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = ps
        h = torch.relu((v_ @ w1.T + b1) / net.T) ** n
        return loss_fn(h @ w2.T + b2, y, cfg)

    assert torch.autograd.gradcheck(f, (v.requires_grad_(), *[p.detach().clone().requires_grad_() for p in params]))
    # the module computes the same function
    assert f(v, *params).item() == pytest.approx(loss_fn(net(v), y, cfg).item(), rel=1e-12)


@pytest.mark.parametrize("n", [20, 30])
def test_float32_stays_finite_at_the_largest_argument(n: int) -> None:
    """With dam_init the weights are clipped to [-1, 1] and the bias to [-10, 10]: the largest possible
    pre-activation, 794, gives F_n(794 / T) far inside float32, and the gradient is finite too."""
    cfg = PolyNetConfig.for_power("smoke", n, "ce")
    net = PolyNet(n, 4, cfg.temperature)
    with torch.no_grad():
        net.hidden.weight.fill_(1.0)
        net.hidden.bias.fill_(10.0)
    v = torch.ones(2, 784, requires_grad=True)
    out = net(v)
    assert torch.isfinite(out).all() and net.activation(v).max().item() == pytest.approx((794 / cfg.temperature) ** n,
                                                                                          rel=1e-4)
    loss_fn(out, torch.tensor([1, 2]), cfg).backward()
    assert torch.isfinite(v.grad).all()


@pytest.mark.parametrize(("field", "value"), [("objective", "mse"), ("n", 0), ("hidden", 0), ("lr", 0.0),
                                              ("epochs", -1), ("dam_init", "yes")])
def test_bad_parameters_fail_with_their_name(field: str, value: object) -> None:
    with pytest.raises(ParameterError, match=field):
        PolyNetConfig.smoke(**{field: value})


def test_presets_per_power() -> None:
    relu, large = PolyNetConfig.for_power("cpu", 1, "ce"), PolyNetConfig.for_power("cpu", 30, "dam")
    assert (relu.dam_init, relu.temperature, relu.adam_eps) == (False, 1.0, 1e-8)
    assert large.dam_init and large.temperature == 650.0 and large.m == 30 and large.adam_eps == 1e-30
    small = PolyNetConfig.for_power("cpu", 3, "ce")
    assert (small.dam_init, small.temperature, small.epochs) == (False, 1.0, relu.epochs)
    assert PolyNetConfig.for_power("cpu", 30, "ce").epochs == 3 * relu.epochs
    assert polynet.LARGE_N == claims.LARGE_N_MIN  # chapter 5 glues the claims' constant for this rule


def test_training_learns_and_round_trips(tmp_path, mnist) -> None:
    """A short run of the ReLU network falls well below chance; storing and loading gives the same network,
    and a modified weight file is refused."""
    cfg = PolyNetConfig.for_power("smoke", 1, "ce", hidden=100, epochs=1, batches_per_epoch=100)
    res = train_polynet(cfg, mnist, progress=False)
    assert res.history[-1]["test_error"] < 30.0
    entry = save_polynet(res, mnist, root=tmp_path)
    net, e2 = load_polynet(cfg.name, root=tmp_path)
    assert e2 == entry and polynet.committed_polynets(tmp_path) == {"ce_n1": cfg.name}
    assert torch.equal(net.predict(mnist.x_test[:500]), res.net.predict(mnist.x_test[:500]))
    path = tmp_path / entry["path"]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        load_polynet(cfg.name, root=tmp_path)
    shutil.rmtree(tmp_path / "models")


def test_dam_init_keeps_the_weights_in_the_box(mnist) -> None:
    cfg = PolyNetConfig.for_power("smoke", 30, "dam", hidden=20)
    net = train_polynet(cfg, mnist, progress=False).net
    assert net.hidden.weight.abs().max() <= 1.0 and net.hidden.bias.abs().max() <= 10.0
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_dead_units_on_a_constructed_network() -> None:
    """Units 1 and 3 have negative weights and bias, so z < 0 on every image in [0, 1]: dead; the others live."""
    net = PolyNet(2, 4)
    with torch.no_grad():
        net.hidden.weight.copy_(torch.tensor([1.0, -1.0, 0.5, -0.5]).unsqueeze(1).expand(4, 784))
        net.hidden.bias.copy_(torch.tensor([0.1, -0.1, 0.1, -0.1]))
    v = torch.rand(50, 784)
    assert net.dead_units(v, batch_size=16).tolist() == [False, True, False, True]


def test_input_gradient_matches_finite_differences() -> None:
    """The attacks differentiate ``energy_difference`` with respect to the image: autograd against central
    differences, in float64, at n = 3 with the DAM-like temperature."""
    torch.manual_seed(0)
    net = PolyNet(3, 40, T=5.0).as_float64()
    v = (torch.rand(2, 784, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    w = torch.randn(2, 10, dtype=torch.float64)
    (g,) = torch.autograd.grad((net.energy_difference(v) * w).sum(), v)
    h = 1e-6
    for i in (0, 100, 400, 783):
        e = torch.zeros_like(v)
        e[:, i] = h
        with torch.no_grad():
            fd = ((net.energy_difference(v + e) - net.energy_difference(v - e)) * w).sum(1) / (2 * h)
        assert torch.allclose(g[:, i], fd, rtol=1e-6, atol=1e-9)


def test_classifier_interface_agrees_with_forward() -> None:
    torch.manual_seed(1)
    net = PolyNet(2, 30, T=3.0)
    x = torch.rand(7, 784) * 2 - 1
    assert torch.allclose(net.predict_energy(x, batch_size=3), net(x).detach(), atol=1e-5)
    assert torch.equal(net.predict(x), net(x).argmax(1))
    twin = net.as_float64()
    assert twin.hidden.weight.dtype == torch.float64 and float(twin.T) == 3.0
    assert torch.allclose(twin(x.double()), net(x).double(), atol=1e-5)


def test_attacks_descend_the_networks_own_loss() -> None:
    """A CE network is deformed along its cross-entropy for the target class (objectives.model_loss)."""
    torch.manual_seed(3)
    net = PolyNet(2, 20, T=4.0).double()
    x, alpha = torch.rand(5, 784, dtype=torch.float64) * 2 - 1, torch.tensor([1, 2, 3, 4, 5])
    g, _ = objective_gradient(net, x, alpha, m=2)
    v = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(net(v), alpha, reduction="sum").backward()
    assert model_loss(net) == "ce" and model_loss(PolyNet(1, 3, loss="dam")) == "dam"
    assert torch.allclose(g, v.grad)


def test_committed_networks_are_their_presets() -> None:
    """Every network in manifest["polynets"] was trained with the cpu preset of its power and objective, so
    `python -m dam_utils.polynet --profile cpu` retrains exactly it; its recorded errors come from its weights."""
    committed = polynet.committed_polynets()
    if not committed:
        pytest.skip("no committed networks")
    for key, name in committed.items():
        net, e = load_polynet(name)
        cfg = PolyNetConfig(**e["config"])
        assert key == f"{cfg.objective}_n{cfg.n}"
        assert cfg == PolyNetConfig.for_power("cpu", cfg.n, cfg.objective), name
        assert net.loss == cfg.objective
        assert 0.0 <= e["dead_units_pct"] <= 100.0
