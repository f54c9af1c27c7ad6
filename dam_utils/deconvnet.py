"""Zeiler-Fergus deconvnet projections of the base CNN's units into pixel space (seed 003, §5.2, Figs. 11-12;
appendix B, experiment E3).

Hinthorn projects a unit back to the image by "masking over all neurons in a particular layer (by zeroing them
out) except for the one in question" and "reversing the signal through the original CNN". With Zeiler & Fergus'
rules (Zeiler and Fergus, 2014, §2.1), the signal of one unit (its activation, every other unit of the layer
zeroed) goes back down the network:

* through a ReLU: apply ReLU to the backward signal (not the forward gate the gradient would use);
* through a max-pool: unpool with the *switches* recorded in this image's own forward pass;
* through a convolution: the transposed convolution with the same filters; through a linear layer: W^T;
* through the fixed standardisation (x - mean) / std: multiply by 1 / std.

Biases are not used on the way down. The layer-level map of Fig. 11 is the mean of the per-unit projections.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .cnn import MNIST_STD, BaseCNN
from .params import check_choice

__all__ = ["PROJECTED_LAYERS", "project_units"]

PROJECTED_LAYERS = ("conv2", "fc")


@torch.no_grad()
def project_units(model: BaseCNN, x: torch.Tensor, layer: str, units: torch.Tensor | None = None) -> torch.Tensor:
    """Deconvnet projection (module doc) of ``units`` (default: all) of ``layer`` for images ``x`` (B, 784) in
    [0, 1]: (B, U, 784), one pixel-space map per unit."""
    check_choice("layer", layer, PROJECTED_LAYERS)
    # Forward pass, keeping the switches of both max-pools.
    a1 = torch.relu(model.conv1(model.standardise(x)))  # (B, 32, 24, 24)
    p1, sw1 = F.max_pool2d(a1, 3, 3, return_indices=True)  # (B, 32, 8, 8)
    a2 = torch.relu(model.conv2(p1))  # (B, 64, 4, 4)
    p2, sw2 = F.max_pool2d(a2, 2, 2, return_indices=True)  # (B, 64, 2, 2)
    act = a2 if layer == "conv2" else torch.relu(model.fc(p2.flatten(1)))  # (B, 64, 4, 4) or (B, 200)
    n_units = act.shape[1]
    units = torch.arange(n_units) if units is None else units.reshape(-1)
    b, u = len(x), len(units)
    # One signal per (image, unit): the layer's activations with every other unit zeroed.
    mask = torch.zeros(u, n_units, dtype=act.dtype)
    mask[torch.arange(u), units] = 1.0
    mask = mask.reshape(u, n_units, *([1] * (act.ndim - 2)))
    s = (act.unsqueeze(1) * mask).flatten(0, 1)  # (B * U, *unit layer shape)

    def rep(t: torch.Tensor) -> torch.Tensor:  # a per-image tensor repeated for its U signals
        return t.repeat_interleave(u, dim=0)

    if layer == "fc":
        s = torch.relu(s) @ model.fc.weight  # (B * U, 256)
        s = F.max_unpool2d(s.reshape(-1, 64, 2, 2), rep(sw2), 2, 2, output_size=(4, 4))  # (B * U, 64, 4, 4)
    s = F.conv_transpose2d(torch.relu(s), model.conv2.weight)  # (B * U, 32, 8, 8)
    s = F.max_unpool2d(s, rep(sw1), 3, 3, output_size=(24, 24))  # (B * U, 32, 24, 24)
    s = F.conv_transpose2d(torch.relu(s), model.conv1.weight) / MNIST_STD  # (B * U, 1, 28, 28)
    return s.reshape(b, u, 784)
