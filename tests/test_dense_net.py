"""dam_utils.dense_net: the equioutput symmetries of a dense layer. Permutations and sign flips of tanh hidden
units leave the outputs unchanged to float error; sign flips under ReLU and swaps of single weights do not; and
training commutes with a permutation of the initial hidden units."""

from __future__ import annotations

import pytest
import torch

from dam_utils.dense_net import (
    DenseConfig,
    DenseNet,
    canonicalise,
    cone_keys,
    order_changes,
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
    assert order_changes([can, can, moved]) == [{"inversions": 0, "sign_changes": 0}] * 2 + [
        {"inversions": 1 + int((b[5] < b[:5]).sum()), "sign_changes": 1}]
