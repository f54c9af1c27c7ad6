"""dam_utils.selective_dropout: the two volatility definitions, the selection of units, and the masked update
(unselected units of the target layer do not move, momentum included; everything else does)."""

from __future__ import annotations

import pytest
import torch

from dam_utils.cnn import BaseCNN, CNNConfig, torch_sgd
from dam_utils.params import ParameterError
from dam_utils.selective_dropout import blame_concentration, masked_step, select_units, volatility


def test_volatility_definitions() -> None:
    o = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, U=2, S=2)
    a = torch.tensor([[[0.0, 1.0], [0.0, 3.0]]])
    assert torch.allclose(volatility(o, a), torch.tensor([[2**0.5, 2.0]]))  # ||a - o||
    assert torch.allclose(volatility(o, a, "norms"), torch.tensor([[0.0, 2.0]]))  # | ||a|| - ||o|| |
    fc_o, fc_a = torch.rand(3, 200), torch.rand(3, 200)  # scalars >= 0: the two definitions agree
    assert torch.allclose(volatility(fc_o, fc_a), volatility(fc_o, fc_a, "norms"))
    with pytest.raises(ParameterError, match="'kind'"):
        volatility(o, a, "max")
    with pytest.raises(ValueError, match="shapes differ"):
        volatility(o, a[:, :1])


def test_select_units_takes_the_ceil_p_most_volatile() -> None:
    v = torch.tensor([0.1, 5.0, 3.0, 0.0, 4.0])
    assert select_units(v, 0.5).tolist() == [1, 2, 4]  # ceil(2.5) = 3
    assert select_units(v, 1.0).tolist() == [0, 1, 2, 3, 4]
    ties = {tuple(select_units(torch.zeros(10), 0.2, torch.Generator().manual_seed(s)).tolist()) for s in range(20)}
    assert len(ties) > 1 and all(len(t) == 2 for t in ties)  # random among equals
    with pytest.raises(ParameterError, match="'p'"):
        select_units(v, 0.0)


@pytest.mark.parametrize("layer", ["conv2", "fc"])
def test_masked_update_leaves_unselected_units_unchanged(layer: str) -> None:
    torch.manual_seed(0)
    net = BaseCNN()
    opt, _ = torch_sgd(net.parameters(), CNNConfig.cpu())
    x, y = torch.rand(4, 784), torch.tensor([0, 1, 2, 3])
    module = getattr(net, layer)
    units = module.weight.shape[0]
    selected = torch.tensor([1, 5, 7])
    others = torch.tensor([j for j in range(units) if j not in selected.tolist()])
    for _ in range(3):  # several steps: momentum must not move the frozen units either
        before = {k: v.detach().clone() for k, v in net.named_parameters()}
        masked_step(net, opt, layer, selected, lambda: torch.nn.functional.cross_entropy(net(x), y))
        after = dict(net.named_parameters())
        for part in ("weight", "bias"):
            key = f"{layer}.{part}"
            assert torch.equal(after[key][others], before[key][others])
            assert not torch.equal(after[key][selected], before[key][selected])
            assert (opt.state[module.weight]["momentum_buffer"][others] == 0).all()
        assert not torch.equal(after["conv1.weight"], before["conv1.weight"])  # other layers train
        assert not torch.equal(after["out.weight"], before["out.weight"])


def test_control_is_a_plain_step() -> None:
    torch.manual_seed(0)
    a, b = BaseCNN(), BaseCNN()
    b.load_state_dict(a.state_dict())
    x, y = torch.rand(4, 784), torch.tensor([0, 1, 2, 3])
    opt_a, _ = torch_sgd(a.parameters(), CNNConfig.cpu())
    opt_b, _ = torch_sgd(b.parameters(), CNNConfig.cpu())
    masked_step(a, opt_a, "fc", None, lambda: torch.nn.functional.cross_entropy(a(x), y))
    masked_step(b, opt_b, "fc", torch.arange(200), lambda: torch.nn.functional.cross_entropy(b(x), y))  # p = 1
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_blame_concentration() -> None:
    even = blame_concentration(torch.ones(2, 200))  # blame spread evenly: shares equal the unit fractions
    assert torch.allclose(even["top10"], torch.tensor(0.1, dtype=torch.float64))
    assert torch.allclose(even["top20"], torch.tensor(0.2, dtype=torch.float64))
    assert even["quiet"].eq(0).all()
    v = torch.zeros(1, 10)
    v[0, 3] = 9.0
    v[0, 7] = 1.0
    one = blame_concentration(v)  # top 10 % = 1 unit carries 9 of 10; 8 of 10 units are silent
    assert one["top10"].item() == pytest.approx(0.9) and one["top20"].item() == pytest.approx(1.0)
    assert one["quiet"].item() == pytest.approx(0.8)
