"""The book's classifiers as the attack libraries expect them (chapter 7).

AutoAttack (``pyautoattack``) and foolbox attack a ``torch.nn.Module`` that takes images in ``[0, 1]`` and
returns logits. The book's models take ``v`` in ``[-1, 1]`` (B, 784) and expose the pre-tanh ``D`` of eq. (1)
(:meth:`dam_utils.model.DAM.energy_difference`; for a feed-forward network, its last layer). :class:`AttackView`
is the thin adapter between the two, and nothing else: it holds no attack logic.

* ``output="logits"`` returns ``D`` (B, 10): the libraries' losses (cross-entropy, DLR, margins) see the
  model's real ordering of classes at full resolution.
* ``output="tanh"`` returns ``Y = tanh(D)``, the paper's outputs (eq. (1)). In float32 ``tanh(D) == +-1``
  exactly once ``|D| > ~9``, so a loss on ``Y`` can have a zero gradient where the model is far from safe.
  Chapter 7 attacks both, to show whether the difference hides anything (the gradient-masking checklist).

Images go in as ``(B, 1, 28, 28)`` (Square Attack needs a channel and two spatial axes) or ``(B, 784)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .data_sources import N_PIXELS

__all__ = ["OUTPUTS", "AttackView", "to_images", "to_visible"]

OUTPUTS = ("logits", "tanh")
SIDE = 28


def to_images(v: torch.Tensor) -> torch.Tensor:
    """Visible states ``v`` in [-1, 1], (B, 784) -> images in [0, 1], (B, 1, 28, 28)."""
    return ((v + 1.0) / 2.0).reshape(-1, 1, SIDE, SIDE)


def to_visible(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], (B, 1, 28, 28) or (B, 784) -> visible states ``v = 2x - 1``, (B, 784)."""
    return 2.0 * x.reshape(x.shape[0], N_PIXELS) - 1.0


class AttackView(nn.Module):
    """``model`` (anything with ``energy_difference(v)``, a :class:`~dam_utils.objectives.Classifier`) seen
    from ``[0, 1]`` images. ``forward(x)``: ``D`` (``output="logits"``) or ``tanh(D)`` (``"tanh"``), (B, 10).

    The wrapped model's parameters are frozen views (no copy); the module is in ``eval`` mode and has no
    randomness, so AutoAttack's checks for randomised or dynamic defences have nothing to find."""

    def __init__(self, model: Any, output: str = "logits") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if not hasattr(model, "energy_difference"):
            raise TypeError(f"{type(model).__name__} has no energy_difference(v); it is not a book classifier")
        self.model = model
        self.output = output
        if isinstance(model, nn.Module):  # a PolyNet: registered, so .eval() and .to() reach it
            model.eval()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        D = self.model.energy_difference(to_visible(x))  # (B, 10)
        return D if self.output == "logits" else torch.tanh(D)

    def extra_repr(self) -> str:
        return f"output={self.output!r}, model={type(self.model).__name__}"
