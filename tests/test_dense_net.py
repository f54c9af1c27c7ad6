"""dam_utils.dense_net: the equioutput symmetries of a dense layer. Permutations and sign flips of tanh hidden
units leave the outputs unchanged to float error; sign flips under ReLU and swaps of single weights do not; and
training commutes with a permutation of the initial hidden units; the training history logs the cone keys, a
diverging run stops, and the committed net round-trips, is refused when corrupted and matches the code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dam_utils.artifacts import load_history
from dam_utils.dense_net import (
    DenseConfig,
    DenseNet,
    canonicalise,
    committed_dense,
    cone_keys,
    initial_state,
    load_dense,
    order_change,
    save_dense,
    swap_weights,
    train_dense,
    transform_hidden,
)
from dam_utils.params import ParameterError


def _net(activation: str = "tanh") -> DenseNet:
    torch.manual_seed(0)
    return DenseNet(32, activation).eval()


def _out(net: DenseNet, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    other = DenseNet(32, net.activation)
    other.load_state_dict(state)
    with torch.no_grad():
        return other(x)


def test_permutations_and_sign_flips_are_exact_for_tanh() -> None:
    net, x = _net(), torch.rand(64, 784)
    ref = _out(net, net.state_dict(), x)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        perm = torch.randperm(32, generator=g)
        signs = torch.where(torch.rand(32, generator=g) > 0.5, 1.0, -1.0)
        new = transform_hidden(net.state_dict(), perm, signs)
        assert (_out(net, new, x) - ref).abs().max() <= 1e-5
        assert not torch.equal(new["fc1.weight"], net.state_dict()["fc1.weight"])  # the weights did move


def test_what_is_not_a_symmetry() -> None:
    x = torch.rand(64, 784)
    relu = _net("relu")
    signs = torch.ones(32)
    signs[:8] = -1
    ref = _out(relu, relu.state_dict(), x)
    assert (_out(relu, transform_hidden(relu.state_dict(), signs=signs), x) - ref).abs().max() > 1e-2
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(2))
    assert (_out(relu, transform_hidden(relu.state_dict(), perm), x) - ref).abs().max() <= 1e-5  # still one
    tanh = _net()
    swapped = swap_weights(tanh.state_dict(), (0, 300), (1, 300))  # one weight of unit 0 with one of unit 1
    assert (_out(tanh, swapped, x) - _out(tanh, tanh.state_dict(), x)).abs().max() > 1e-4


def test_training_commutes_with_a_permutation(mnist) -> None:
    cfg = DenseConfig(hidden=32, epochs=1, n_train=640, seed=3)
    torch.manual_seed(5)
    init = DenseNet(32).state_dict()
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(4))
    a, _, _ = train_dense(cfg, mnist, init, progress=False)
    b, _, _ = train_dense(cfg, mnist, transform_hidden(init, perm), progress=False)
    moved = transform_hidden(a.state_dict(), perm)
    for k, v in b.state_dict().items():
        assert torch.allclose(v, moved[k], atol=1e-5), k


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ParameterError, match="'activation'"):
        DenseNet(8, "sigmoid")
    with pytest.raises(ParameterError, match="'hidden'"):
        DenseConfig(hidden=0)


def test_canonical_wedge_and_order_changes() -> None:

    net, x = _net(), torch.rand(16, 784)
    can = canonicalise(net.state_dict())
    keys = cone_keys(can)
    assert (keys > 0).all() and (keys.diff() > 0).all()  # positive, increasing
    assert (_out(net, can, x) - _out(net, net.state_dict(), x)).abs().max() <= 1e-5  # the same function
    moved = dict(can)
    b = can["fc1.bias"].clone()
    b[[0, 1]] = b[[1, 0]]  # two units swap order
    b[5] = -b[5]  # one key changes sign
    moved["fc1.bias"] = b
    assert order_change(keys, keys) == {"inversions": 0, "sign_changes": 0}
    assert order_change(keys, cone_keys(moved)) == {"inversions": 1 + int((b[5] < b[:5]).sum()), "sign_changes": 1}


def test_history_logs_the_cone_and_bad_training_stops(mnist) -> None:
    cfg = DenseConfig(hidden=16, epochs=1, n_train=320, seed=2)
    start = canonicalise(initial_state(cfg))
    net, history, _ = train_dense(cfg, mnist, start, log_every=4, progress=False)
    assert [r["step"] for r in history] == [0, 4, 8, 10]  # start, every 4 steps, end of the epoch
    assert history[0]["bias"] == {"inversions": 0, "sign_changes": 0} and min(history[0]["keys_bias"]) > 0
    assert history[-1]["keys_bias"] == [round(float(v), 7) for v in net.fc1.bias.detach()]
    assert "test_error" in history[0] and "test_error" in history[-1] and "test_error" not in history[1]
    with pytest.raises(FloatingPointError, match="lower lr"):
        train_dense(DenseConfig(hidden=16, epochs=1, n_train=320, lr=100.0), mnist, progress=False)


def test_dense_round_trip_and_refusal(mnist, tmp_path) -> None:
    from dam_utils.artifacts import ArtifactError  # noqa: PLC0415

    cfg = DenseConfig.smoke(hidden=16, n_train=320)
    net, history, wall = train_dense(cfg, mnist, progress=False)
    e = save_dense(net, cfg, "smoke", history, wall, mnist, root=tmp_path)
    name = committed_dense("smoke", root=tmp_path)
    back, entry = load_dense(name, root=tmp_path)
    x = torch.rand(8, 784)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    assert entry["test_error"] == history[-1]["test_error"] and e["config"]["hidden"] == 16
    path = tmp_path / entry["path"]
    path.write_bytes(path.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ArtifactError):
        load_dense(name, root=tmp_path)


@pytest.mark.slow
def test_committed_dense_net_matches_the_code(mnist) -> None:
    """The committed net's first epoch, re-trained from its config: the same biases at the end of epoch 1."""
    name = committed_dense("cpu")
    assert name is not None, "no committed dense net: python -m dam_utils.dense_net"
    _, entry = load_dense(name)
    cfg = DenseConfig(**{**entry["config"], "epochs": 1})
    _, history, _ = train_dense(cfg, mnist, canonicalise(initial_state(cfg)), progress=False)
    committed = [r for r in load_history(name) if r["epoch"] == 1][-1]
    assert np.allclose(history[-1]["keys_bias"], committed["keys_bias"], atol=1e-5)
    assert history[-1]["bias"] == committed["bias"] and history[-1]["test_error"] == committed["test_error"]
