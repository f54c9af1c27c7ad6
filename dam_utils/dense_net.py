"""The dense network of Musunuru et al. (seed 004, §II.A.1; appendix C), its training, and the equioutput
transformations of its hidden units (§II.C.1, after Hecht-Nielsen).

The document says only "a dense network" trained with "SGD and RMS error". Following the reading notes: MNIST in
[0, 1], 784 -> 128 -> 10, tanh hidden units, linear outputs, mean squared error against one-hot targets (the RMS
error has the same minimiser), SGD with learning rate 0.1 and batches of 32 for 20 epochs.

tanh is odd, so flipping the sign of a hidden unit's incoming weights and bias and of its outgoing weights leaves
the output exactly unchanged; so does permuting the hidden units (incoming rows and outgoing columns together).
Both are :func:`transform_hidden`. With ReLU the sign flip is not a symmetry; swapping two single weights (not
whole units, :func:`swap_weights`) is not one either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import Dataset
from .params import Preset, check_choice, choice_field, float_field, int_field

__all__ = ["ACTIVATIONS", "CONE_KEYS", "DenseConfig", "DenseNet", "canonicalise", "cone_keys", "order_changes",
           "swap_weights", "train_dense", "transform_hidden"]

ACTIVATIONS = ("tanh", "relu")


class DenseNet(nn.Module):
    """784 -> ``hidden`` (tanh or ReLU) -> 10 linear outputs, for images (B, 784) in [0, 1]."""

    def __init__(self, hidden: int = 128, activation: str = "tanh") -> None:
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        self.activation = activation
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc1(x)
        return torch.tanh(z) if self.activation == "tanh" else torch.relu(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.hidden(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 5000) -> torch.Tensor:
        return torch.cat([self(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


@dataclass(frozen=True)
class DenseConfig(Preset):
    """Training of :class:`DenseNet` (module doc)."""

    hidden: int = int_field(128, 1, 100000)
    activation: str = choice_field("tanh", ACTIVATIONS)
    lr: float = float_field(0.1, 0.0, 100.0, lo_inclusive=False)
    batch_size: int = int_field(32, 1, 60000)
    epochs: int = int_field(20, 1, 10000)
    n_train: int = int_field(60000, 1, 60000)
    seed: int = int_field(0, 0, 2**31 - 1)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {},
                                                     "smoke": {"epochs": 1, "n_train": 5000}}


def train_dense(cfg: DenseConfig, data: Dataset, init: dict[str, torch.Tensor] | None = None,
                log_every: int = 0, progress: bool = True
                ) -> tuple[DenseNet, list[dict[str, torch.Tensor]], float]:
    """Train a :class:`DenseNet` by SGD on the squared error (module doc), from ``init`` (a state dict) or a
    seeded initialisation; the order of the batches depends on ``cfg.seed`` only, so two runs from permuted
    initial weights see the same data. Returns the network, snapshots of its state (at the start, every
    ``log_every`` steps when > 0, and after every epoch) and the wall time."""
    torch.manual_seed(cfg.seed)
    net = DenseNet(cfg.hidden, cfg.activation)
    if init is not None:
        net.load_state_dict(init)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    x = (data.x_train[: cfg.n_train] + 1) / 2  # (N, 784) in [0, 1]
    t = nn.functional.one_hot(data.y_train[: cfg.n_train].long(), 10).float()
    gen = torch.Generator().manual_seed(cfg.seed)

    def snap() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in net.state_dict().items()}

    snaps, step, t0 = [snap()], 0, time.perf_counter()
    for _ in tqdm(range(cfg.epochs), desc="dense net", disable=not progress):
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            loss = ((net(x[idx]) - t[idx]) ** 2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if log_every and step % log_every == 0:
                snaps.append(snap())
        snaps.append(snap())
    return net.eval(), snaps, time.perf_counter() - t0


def transform_hidden(state: dict[str, torch.Tensor], perm: torch.Tensor | None = None,
                     signs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The equioutput transformation W1' = D P W1, b1' = D P b1, W2' = W2 P^T D of a state dict: ``perm`` (H,)
    reorders the hidden units, ``signs`` (H,) of +-1 flips them."""
    h = state["fc1.weight"].shape[0]
    perm = torch.arange(h) if perm is None else perm
    d = torch.ones(h) if signs is None else signs.to(state["fc1.weight"].dtype)
    out = dict(state)
    out["fc1.weight"] = d[:, None] * state["fc1.weight"][perm]
    out["fc1.bias"] = d * state["fc1.bias"][perm]
    out["fc2.weight"] = state["fc2.weight"][:, perm] * d[None, :]
    return out


def swap_weights(state: dict[str, torch.Tensor], a: tuple[int, int], b: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Swap two single incoming weights W1[a] and W1[b] (not whole units): not a symmetry in general."""
    out = dict(state)
    w = state["fc1.weight"].clone()
    w[a], w[b] = state["fc1.weight"][b], state["fc1.weight"][a]
    out["fc1.weight"] = w
    return out


#: Keys that order the hidden units for the cone check (§II.C.1): the bias, and the norm of the incoming weights.
CONE_KEYS = ("bias", "norm")


def cone_keys(state: dict[str, torch.Tensor], key: str = "bias") -> torch.Tensor:
    """The key (H,) of every hidden unit: its bias, or the norm of its incoming weights."""
    check_choice("key", key, CONE_KEYS)
    return state["fc1.bias"] if key == "bias" else state["fc1.weight"].norm(dim=1)


def canonicalise(state: dict[str, torch.Tensor], key: str = "bias") -> dict[str, torch.Tensor]:
    """The equioutput copy of ``state`` in the canonical wedge: every unit flipped so that its bias is positive
    (``key="bias"``; a norm is never negative), then the units sorted by increasing key."""
    signs = torch.where(state["fc1.bias"] < 0, -1.0, 1.0) if key == "bias" else None
    flipped = transform_hidden(state, signs=signs)
    return transform_hidden(flipped, perm=cone_keys(flipped, key).argsort())


def order_changes(snaps: list[dict[str, torch.Tensor]], key: str = "bias") -> list[dict[str, int]]:
    """For each snapshot, against the first: adjacent-pair inversions of the initial order (the number of
    unit pairs whose keys swapped order, i.e. the Kendall distance) and sign changes of the keys."""
    k0 = cone_keys(snaps[0], key)
    out = []
    for st in snaps:
        k = cone_keys(st, key)
        d0 = k0[:, None] - k0[None, :]
        d = k[:, None] - k[None, :]
        out.append({"inversions": int(((d0 * d) < 0).sum()) // 2, "sign_changes": int(((k0 * k) < 0).sum())})
    return out
