"""dam_utils.deconvnet: Zeiler-Fergus projections against a case computed by hand, and the rules that make them
differ from a gradient (ReLU on the backward signal, the image's own pooling switches)."""

from __future__ import annotations

import pytest
import torch

from dam_utils.cnn import MNIST_MEAN, MNIST_STD, BaseCNN
from dam_utils.deconvnet import project_units
from dam_utils.params import ParameterError


def _hand_net() -> BaseCNN:
    """conv1 map 0 copies the standardised pixel (delta kernel); conv2 map 5 copies pool1 map 0; fc neuron 7 reads
    pool2 (map 5, row 1, col 1) with weight 2; everything else zero, no biases."""
    net = BaseCNN()
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        net.conv1.weight[0, 0, 0, 0] = 1.0
        net.conv2.weight[5, 0, 0, 0] = 1.0
        net.fc.weight[7, 5 * 4 + 1 * 2 + 1] = 2.0
    return net.eval()


def test_projection_equals_the_hand_computed_case() -> None:
    x = torch.zeros(1, 784)
    x[0, 10 * 28 + 10] = 1.0  # one white pixel at (10, 10)
    # Forward by hand: conv1 map 0 is the standardised image, positive only at (10, 10): s = (1 - mean) / std.
    # pool1 (3 x 3) puts it at (3, 3) with the switch (10, 10); conv2 map 5 = pool1 map 0, so a2[5, 3, 3] = s;
    # pool2 (2 x 2) puts it at (1, 1) with the switch (3, 3); fc neuron 7 = relu(2 s).
    s = (1 - MNIST_MEAN) / MNIST_STD
    conv2 = project_units(_hand_net(), x, "conv2")  # (1, 64, 784)
    expected = torch.zeros(784)
    expected[10 * 28 + 10] = s / MNIST_STD  # back through conv2^T, the switch, conv1^T and 1 / std
    assert conv2.shape == (1, 64, 784)
    assert torch.allclose(conv2[0, 5], expected)
    assert conv2[0, [u for u in range(64) if u != 5]].abs().max() == 0  # units with no activity project nothing
    fc = project_units(_hand_net(), x, "fc", torch.tensor([7, 3]))  # (1, 2, 784)
    expected[10 * 28 + 10] = 2 * (2 * s) / MNIST_STD  # W^T multiplies the activation 2 s by 2 once more
    assert torch.allclose(fc[0, 0], expected)
    assert fc[0, 1].abs().max() == 0


def test_backward_relu_and_switches_make_it_not_the_gradient() -> None:
    torch.manual_seed(0)
    net, x = BaseCNN().eval(), torch.rand(3, 784)
    proj = project_units(net, x, "fc")  # (3, 200, 784)
    # Same switches and linear maps as the gradient of 0.5 * h_j^2 (= h_j * dh_j/dx), but ReLU on the way down:
    # wherever the gradient's ReLU gates would pass a negative signal, the two differ.
    xg = x[:1].clone().requires_grad_(True)
    h = net.activations(xg)["fc"][0]
    j = int(h.argmax())
    (0.5 * h[j] ** 2).backward()
    assert xg.grad is not None
    assert not torch.allclose(proj[0, j], xg.grad[0], atol=1e-6)
    assert torch.isfinite(proj).all()
    # Each image uses its own switches: a batch equals its images one by one.
    assert torch.allclose(proj[2], project_units(net, x[2:], "fc")[0], atol=1e-5)


def test_bad_layer_is_refused() -> None:
    with pytest.raises(ParameterError, match="'layer'"):
        project_units(BaseCNN(), torch.rand(1, 784), "conv1")
