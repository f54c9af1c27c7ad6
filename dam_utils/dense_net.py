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

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .artifacts import read_manifest, store_weights, verified_path
from .data import Dataset, dataset_fingerprint, load_mnist
from .params import PROFILES, Preset, check_choice, choice_field, float_field, int_field
from .provenance import environment_info

__all__ = ["ACTIVATIONS", "CONE_KEYS", "DENSE_TABLE", "DenseConfig", "DenseNet", "canonicalise", "committed_dense",
           "cone_keys", "initial_state", "load_dense", "order_change", "permuted_copies", "save_dense",
           "swap_weights", "train_dense", "transform_hidden"]

ACTIVATIONS = ("tanh", "relu")
#: ``manifest["dense_nets"][profile]``: the committed dense network of each profile.
DENSE_TABLE = "dense_nets"


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


def initial_state(cfg: DenseConfig) -> dict[str, torch.Tensor]:
    """The seeded initial weights of a :class:`DenseNet` of ``cfg`` (PyTorch's default initialisation)."""
    torch.manual_seed(cfg.seed)
    return DenseNet(cfg.hidden, cfg.activation).state_dict()


def train_dense(cfg: DenseConfig, data: Dataset, init: dict[str, torch.Tensor] | None = None,
                log_every: int = 0, progress: bool = True) -> tuple[DenseNet, list[dict[str, Any]], float]:
    """Train a :class:`DenseNet` by SGD on the mean squared error against one-hot targets (module doc), from
    ``init`` (a state dict) or :func:`initial_state`; the order of the batches depends on ``cfg.seed`` only, so
    runs from permuted initial weights see the same data. A non-finite loss stops training
    (:class:`FloatingPointError`). Returns the network, a history and the wall time. The history has one row at
    the start, every ``log_every`` steps of the first epoch (when > 0) and after every epoch: ``epoch``, ``step``,
    the test error in % (epoch ends), and for each cone key (:data:`CONE_KEYS`) the keys of the hidden units and
    their :func:`order_change` from the start (§II.C.1's "order of ascendance")."""
    net = DenseNet(cfg.hidden, cfg.activation)
    net.load_state_dict(init if init is not None else initial_state(cfg))
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    x = (data.x_train[: cfg.n_train] + 1) / 2  # (N, 784) in [0, 1]
    t = nn.functional.one_hot(data.y_train[: cfg.n_train].long(), 10).float()  # (N, 10)
    x_test = (data.x_test + 1) / 2
    gen = torch.Generator().manual_seed(cfg.seed)
    keys0 = {k: cone_keys(net.state_dict(), k).clone() for k in CONE_KEYS}

    def row(epoch: int, step: int, test: bool) -> dict[str, Any]:
        st, out = net.state_dict(), {"epoch": epoch, "step": step}
        if test:
            out["test_error"] = 100.0 * float((net.predict(x_test) != data.y_test).double().mean())
        for k in CONE_KEYS:
            keys = cone_keys(st, k)
            out[k] = order_change(keys0[k], keys)
            out[f"keys_{k}"] = [round(float(v), 7) for v in keys]
        return out

    history, step, t0 = [row(0, 0, True)], 0, time.perf_counter()
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="dense net", disable=not progress):
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            loss = nn.functional.mse_loss(net(x[idx]), t[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss became {loss.item()} at step {step}: lower lr "
                                         f"(now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if log_every and epoch == 1 and step % log_every == 0:
                history.append(row(epoch, step, False))
        history.append(row(epoch, step, True))
    return net.eval(), history, time.perf_counter() - t0


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


def order_change(k0: torch.Tensor, k: torch.Tensor) -> dict[str, int]:
    """How far keys ``k`` (H,) left the order and signs of the initial keys ``k0`` (H,): ``inversions``, the
    number of unit pairs whose keys swapped order (the Kendall distance), and ``sign_changes``."""
    d0 = k0[:, None] - k0[None, :]
    d = k[:, None] - k[None, :]
    return {"inversions": int(((d0 * d) < 0).sum()) // 2, "sign_changes": int(((k0 * k) < 0).sum())}


def permuted_copies(cfg: DenseConfig, data: Dataset, copies: int, seed: int = 0, progress: bool = True
                    ) -> dict[str, Any]:
    """§II.C.1's "true for every permutation": train from the canonical start and from ``copies`` random
    permutations P of it, with the same data order, and compare each P-copy with the reference moved by P
    (training is equivariant, so they agree to float error). Returns per copy (R,): ``max_abs`` of
    theta_T(P theta_0) - P theta_T(theta_0) over all weights, ``max_output`` the largest output difference on
    the test set, and the final ``inversions_bias`` of the copy and of the reference (the Kendall distance does
    not depend on how the units are labelled, so equivariance makes them equal)."""
    start = canonicalise(initial_state(cfg))
    ref, hist, _ = train_dense(cfg, data, start, progress=False)
    x_test = (data.x_test + 1) / 2
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"max_abs": [], "max_output": [], "inversions_bias": []}
    for _ in tqdm(range(copies), desc="permuted copies", disable=not progress):
        perm = torch.randperm(cfg.hidden, generator=gen)
        net, h, _ = train_dense(cfg, data, transform_hidden(start, perm), progress=False)
        moved = transform_hidden(ref.state_dict(), perm)
        out["max_abs"].append(max(float((v - moved[k]).abs().max()) for k, v in net.state_dict().items()))
        with torch.no_grad():
            out["max_output"].append(float((net(x_test) - ref(x_test)).abs().max()))
        out["inversions_bias"].append(h[-1]["bias"]["inversions"])
    return {**{k: np.asarray(v) for k, v in out.items()}, "reference_inversions_bias": hist[-1]["bias"]["inversions"]}


def save_dense(net: DenseNet, cfg: DenseConfig, profile: str, history: list[dict[str, Any]], wall: float,
               data: Dataset, root: Path | None = None) -> dict[str, Any]:
    """Store the weights with provenance (:func:`~dam_utils.artifacts.store_weights`); the network becomes
    ``manifest["dense_nets"][profile]``."""
    name = f"dense_musunuru_{profile}_h{cfg.hidden}_{cfg.activation}_e{cfg.epochs}_seed{cfg.seed}"
    info = {"kind": "dense-weights", "config": cfg.to_dict(), "profile": profile, "start": "canonical wedge (bias)",
            "environment": environment_info("cpu"), "wall_time_s": round(wall, 1),
            "test_error": history[-1]["test_error"], "data": {"name": data.name, **dataset_fingerprint(data)}}
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    return store_weights(name, arrays, history, info, root, DENSE_TABLE, profile)


def load_dense(name: str, root: Path | None = None) -> tuple[DenseNet, dict[str, Any]]:
    """Verified weights by artifact name: the network (eval mode) and its manifest entry."""
    path, e = verified_path(name, root)
    with np.load(path) as z:
        state = {k: torch.from_numpy(z[k]) for k in z.files}
    net = DenseNet(e["config"]["hidden"], e["config"]["activation"])
    net.load_state_dict(state)
    return net.eval(), e


def committed_dense(profile: str = "cpu", root: Path | None = None) -> str | None:
    """The artifact name of the committed dense network of ``profile`` (None if there is none)."""
    return read_manifest(root).get(DENSE_TABLE, {}).get(profile)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the dense network of appendix C from the canonical wedge and "
                                             "store it under artifacts/.")
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    args = ap.parse_args(argv)
    cfg, data = DenseConfig.preset(args.profile), load_mnist()
    net, history, wall = train_dense(cfg, data, canonicalise(initial_state(cfg)), log_every=100)
    e = save_dense(net, cfg, args.profile, history, wall, data)
    print(f"{e['path']}: test error {e['test_error']:.2f} %, {wall:.0f} s")


if __name__ == "__main__":
    main()
