"""dam_utils.cnn: Hinthorn's base CNN (appendix B): its shapes and size, the Torch7 SGD port, bad input and
config values, training that learns, and the save/load round trip with provenance."""

from __future__ import annotations

import pytest
import torch

from dam_utils.cnn import BaseCNN, CNNConfig, committed_cnn, load_cnn, save_cnn, torch_sgd, train_cnn
from dam_utils.params import ParameterError


def test_architecture_shapes_and_parameter_count() -> None:
    net = BaseCNN()
    a = net.activations(torch.rand(3, 784))
    assert {k: tuple(v.shape) for k, v in a.items()} == {
        "conv1": (3, 32, 24, 24), "pool1": (3, 32, 8, 8), "conv2": (3, 64, 4, 4), "pool2": (3, 64, 2, 2),
        "fc": (3, 200), "logits": (3, 10)}
    assert sum(p.numel() for p in net.parameters()) == 105_506  # conv1 832, conv2 51,264, fc 51,400, out 2,010
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert all((a[k] >= 0).all() for k in ("conv1", "conv2", "fc"))
    with pytest.raises(ValueError, match="784"):
        net(torch.rand(2, 28, 28))


def test_torch7_sgd_semantics() -> None:
    """v = g at the first step, then v <- 0.9 v + 0.1 g; g includes weight decay; lr_t = lr / (1 + decay t)."""
    cfg = CNNConfig(lr=0.1, lr_decay=0.5, momentum=0.9, dampening=0.9, weight_decay=0.01)
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt, sched = torch_sgd([w], cfg)
    grads, expect, v, lr = [2.0, -1.0, 0.5], 1.0, None, 0.1
    for t, g in enumerate(grads):
        full = g + 0.01 * expect
        v = full if v is None else 0.9 * v + 0.1 * full
        expect -= 0.1 / (1 + 0.5 * t) * v
        w.grad = torch.tensor([g])
        opt.step()
        sched.step()
        assert w.item() == pytest.approx(expect, rel=1e-6)
    assert opt.param_groups[0]["lr"] == pytest.approx(lr / (1 + 0.5 * len(grads)))


def test_bad_config_values_are_named() -> None:
    for bad in ({"lr": 0.0}, {"batch_size": 0}, {"momentum": 1.5}, {"n_train": 60001}):
        with pytest.raises(ParameterError, match=f"'{next(iter(bad))}'"):
            CNNConfig.cpu(**bad)


@pytest.mark.slow
def test_training_learns_and_round_trips(mnist, tmp_path) -> None:
    cfg = CNNConfig.smoke(n_train=5000)
    net, history, wall = train_cnn(cfg, mnist, progress=False)
    assert len(history) == 1 and wall > 0 and history[0]["test_error"] < 30.0  # chance is 90 %
    e = save_cnn(net, cfg, "smoke", history, wall, mnist, root=tmp_path)
    back, entry = load_cnn(e["path"].split("/")[-1][: -len(".npz")], root=tmp_path)
    x = (mnist.x_test[:50] + 1) / 2
    assert torch.equal(back(x), net(x))
    assert entry["test_error"] == pytest.approx(net.error_rate((mnist.x_test + 1) / 2, mnist.y_test))
    assert entry["config"] == cfg.to_dict() and entry["environment"]["torch"]


@pytest.mark.slow
def test_committed_base_cnn_reaches_99_percent_and_its_record_holds(mnist) -> None:
    name = committed_cnn("cpu")
    if name is None:
        pytest.skip("no committed base CNN (python -m dam_utils.cnn)")
    net, entry = load_cnn(name)
    err = net.error_rate((mnist.x_test + 1) / 2, mnist.y_test)
    assert err <= 1.0, f"the report's base CNN reaches 99 % accuracy; this one {100 - err:.2f} %"
    assert err == pytest.approx(entry["test_error"], abs=1e-9)
    assert entry["config"] == CNNConfig.cpu().to_dict() and entry["epochs"] == CNNConfig.cpu().epochs
