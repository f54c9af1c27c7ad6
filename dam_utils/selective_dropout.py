"""Selective dropout (Hinthorn, seed 003, §5.3-5.5; appendix B): volatility of units, their selection, and the
masked update of hard-negative training.

* **Volatility** of unit ``j`` of a layer between an original image ``x`` and its adversarial ``x'``. The report
  gives two definitions: §5.2 "the greatest absolute difference between the Frobenius norm of a neuron's activity"
  for the two images, ``| ||a_j(x')|| - ||a_j(x)|| |`` (:func:`volatility`, ``kind="norms"``), and §6 "Frobenius
  norm of difference of neuron activations", ``||a_j(x') - a_j(x)||`` (``kind="difference"``, used for selection).
  A unit of conv2 is a 4 x 4 feature map, a unit of fc a scalar (where the two agree: activations are >= 0).
* **Selection**: the ``ceil(p * width)`` most volatile units (:func:`select_units`; ties broken at random), ``p``
  the proportion retained (§5.5), re-selected at every pair.
* **Masked update** (:func:`masked_step`): one optimiser step in which the units of the target layer that were NOT
  selected do not move at all (their filter or weight row, their bias, and their momentum buffers are restored);
  every other layer updates normally. So ``p = 1`` is exactly the control, as §5.6 says.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .params import check_choice, check_float

__all__ = ["LAYERS", "VOLATILITY", "blame_concentration", "masked_step", "select_units", "volatility"]

#: Target layers: the activation key of :meth:`dam_utils.cnn.BaseCNN.activations` and the module whose units
#: the mask acts on (conv2: 64 feature maps; fc: 200 neurons).
LAYERS = {"conv2": "conv2", "fc": "fc"}
VOLATILITY = ("difference", "norms")


def volatility(a_orig: torch.Tensor, a_adv: torch.Tensor, kind: str = "difference") -> torch.Tensor:
    """Per-unit volatility (module doc) of activations (B, U, ...) -> (B, U); ``kind`` in :data:`VOLATILITY`."""
    check_choice("kind", kind, VOLATILITY)
    if a_orig.shape != a_adv.shape:
        raise ValueError(f"activation shapes differ: {tuple(a_orig.shape)} vs {tuple(a_adv.shape)}")
    o = a_orig.flatten(2) if a_orig.ndim > 2 else a_orig.unsqueeze(2)  # (B, U, S): S values per unit
    a = a_adv.flatten(2) if a_adv.ndim > 2 else a_adv.unsqueeze(2)
    if kind == "difference":
        return (a - o).norm(dim=2)
    return (a.norm(dim=2) - o.norm(dim=2)).abs()


def blame_concentration(v: torch.Tensor, tops: tuple[float, ...] = (0.1, 0.2), quiet: float = 0.01
                        ) -> dict[str, torch.Tensor]:
    """How concentrated the volatility ``v`` (B, U) of B pairs is (the "concentration of blame" of Fig. 10), per
    pair (B,): ``top10`` / ``top20`` the share of sum_j v_j carried by the 10 % / 20 % most volatile units (0.1 /
    0.2 if blame were spread evenly), ``quiet`` the fraction of units below 1 % of the pair's largest v_j."""
    v = v.double()
    ranked = v.sort(dim=1, descending=True).values
    total = ranked.sum(1).clamp_min(torch.finfo(torch.float64).tiny)
    out = {f"top{round(100 * t)}": ranked[:, : math.ceil(t * v.shape[1])].sum(1) / total for t in tops}
    out["quiet"] = (v < quiet * ranked[:, :1]).double().mean(1)
    return out


def select_units(v: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of the ``ceil(p * U)`` largest entries of ``v`` (U,), ties broken at random."""
    p = check_float("p", p, 0.0, 1.0, lo_inclusive=False)
    k = math.ceil(p * len(v))
    jitter = torch.rand(len(v), generator=generator, dtype=torch.float64) * 1e-12  # below any real difference
    order = torch.argsort(v.double() + jitter * (1 + v.double().abs()), descending=True)
    return order[:k].sort().values


def masked_step(model: nn.Module, opt: torch.optim.Optimizer, layer: str, selected: torch.Tensor | None,
                loss_fn: Callable[[], torch.Tensor]) -> float:
    """Backpropagate ``loss_fn()`` and take one step of ``opt`` in which only the ``selected`` units of
    ``model.<layer>`` (output channels / rows of its weight, and its bias) move; ``None``: all units (the
    control). Returns the loss."""
    check_choice("layer", layer, tuple(LAYERS))
    module = getattr(model, LAYERS[layer])
    frozen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    if selected is not None:
        keep = torch.ones(module.weight.shape[0], dtype=torch.bool)
        keep[selected] = False  # True: a unit that must not move
        for param in (module.weight, module.bias):
            buf = opt.state.get(param, {}).get("momentum_buffer")
            frozen.append((param, param.detach()[keep].clone(), None if buf is None else buf[keep].clone()))
    else:
        keep = None
    opt.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    opt.step()
    with torch.no_grad():
        for param, old, old_buf in frozen:
            param[keep] = old
            buf = opt.state[param].get("momentum_buffer")
            if buf is not None:
                if old_buf is None:  # first step: no momentum before it, so none for the units that did not move
                    buf[keep] = 0.0
                else:
                    buf[keep] = old_buf
    return float(loss.detach())
