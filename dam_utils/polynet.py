"""Feed-forward networks with rectified-polynomial hidden units, trained by backpropagation (section 6).

Krotov & Hopfield (2016) show that DAM_n is dual to a network with one hidden layer whose activation is the
rectified polynomial ``F_n(x) = max(x, 0)^n`` (eq. 2). Section 6 of the 2018 paper reports that simply
putting ``F_n`` into an ordinary network trained with backpropagation helps against adversarial images, but
less than DAM with its own training: "other aspects of the training algorithm ... are important". Chapter 5
measures that claim with the networks of this module: 784 - ``hidden`` - 10, hidden activation
``F_n(z / T)`` with ``z = W v + b``.

* **Small n (n < 20; n = 1 is an ordinary ReLU network)**: PyTorch's default initialisation, ``T = 1``, Adam.
* **Large n (n >= 20) is made trainable the way the DAM is** (``dam_init``; from a standard initialisation
  ``z^30`` underflows or overflows): the hidden weights start from the DAM's
  Gaussian (mean -0.3, standard deviation 0.3) and are clipped to [-1, 1] after every step, and the
  temperature is the DAM's ``T`` for that ``n`` (:class:`~dam_utils.train_config.TrainConfig`), folded into
  the activation (``beta F_n(x) = F_n(x / T)``, :mod:`dam_utils.model`). Then ``|z| / T <= 794 / T`` (1.2
  at n = 30) and no power overflows float32. At the start ``z / T ~ 0.3``, so at ``n = 30`` the gradients are
  of order 1e-16: Adam's ``eps`` is set to 1e-30 (``adam_eps``) so that it does not swamp them.
* **Two objectives**, so that the activation can be told apart from "the rest of the training algorithm":
  ``"ce"``, softmax cross-entropy on the outputs (the standard choice), and ``"dam"``, the DAM's objective:
  ``Y = tanh(outputs)`` and ``C = sum_alpha (Y_alpha - t_alpha)^(2m)`` with ``t = +-1`` (eq. 3) and the
  DAM's loss power ``m`` for that ``n``. Both are minimised with Adam on minibatches of the training set, the
  learning rate following a cosine schedule from ``lr`` to 0 over the run (per step).

Run: ``python -m dam_utils.polynet --n 1 2 3 30 --objective ce dam --profile cpu`` (stores the weights
under ``artifacts/`` with provenance, in ``manifest["polynets"]``).
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

from .artifacts import read_manifest, store_weights, verified_path
from .data import Dataset, dataset_fingerprint, load_mnist
from .model import N_CLASSES, N_PIXELS
from .params import PROFILES, Preset, bool_field, choice_field, float_field, int_field
from .provenance import environment_info
from .train_config import TrainConfig

try:  # tqdm is optional: the GPU machine has torch, numpy and scipy only
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

OBJECTIVES = ("ce", "dam")
LARGE_N = 20  # large n (claims.LARGE_N_MIN): the DAM-like initialisation and temperature, three times the epochs
TABLE = "polynets"  # manifest table: "<objective>_n<n>" -> artifact name


@dataclass(frozen=True)
class PolyNetConfig(Preset):
    """Everything that determines a trained network. ``m`` is used by the ``"dam"`` objective only;
    :meth:`for_power` sets it to the DAM's loss power for the same ``n``."""

    n: int = int_field(1, 1, 60)
    objective: str = choice_field("ce", OBJECTIVES)
    hidden: int = int_field(2000, 1, 100_000)
    m: int = int_field(2, 1, 100)
    epochs: int = int_field(20, 1, 100_000)
    batch_size: int = int_field(100, 1, 60_000)
    batches_per_epoch: int = int_field(0, 0, 10**6)  # 0: the whole training set every epoch
    lr: float = float_field(1e-3, 0.0, 1.0, lo_inclusive=False)
    adam_eps: float = float_field(1e-8, 0.0, 1.0, lo_inclusive=False)
    dam_init: bool = bool_field(False)  # DAM initialisation, clipping and temperature (module docstring)
    seed: int = int_field(0, 0, 2**31 - 1)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"epochs": 100},
        "cpu": {"epochs": 20},
        "smoke": {"hidden": 50, "epochs": 2, "batches_per_epoch": 5},
    }

    @classmethod
    def for_power(cls, profile: str, n: int, objective: str, **kw: Any) -> PolyNetConfig:
        """The ``profile`` preset for power ``n`` and ``objective``: the DAM's loss power ``m`` for that ``n``
        (``n = 1`` takes that of ``n = 2``); for large ``n`` the DAM-like set-up of the module docstring.

        Probes behind the choices (cpu, test error): CE at n = 30 with lr 1e-2 reached 6.25 % after 20 epochs
        and 4.15 % after 60 (lr 3e-3: 11.8 %, 3e-2: 8.2 % after 20), hence three times the epochs at large n.
        The DAM objective saturates every tanh output within an epoch at lr 1e-3 from the standard
        initialisation (n = 1) and at 1e-2 from the DAM's (n >= 2), and stays at chance; with the DAM's
        initialisation at n = 2, 3 it learned slowly at any rate (62 %, 89 % after 20 epochs), from the standard
        one at lr 1e-4 it reached 3.7 % / 2.9 % in 2 epochs; at n = 30 only lr 1e-3 moved (72 % after 2)."""
        per_n: dict[str, Any] = {"m": int(TrainConfig.paper(max(n, 2)).m)}
        if n >= LARGE_N:
            per_n.update(dam_init=True, lr=1e-2, adam_eps=1e-30,
                         epochs=3 * cls._PRESETS[profile].get("epochs", cls.epochs))
        if objective == "dam":
            per_n.update(lr=1e-4 if n < LARGE_N else 1e-3)
        return cls.preset(profile, n=n, objective=objective, **{**per_n, **kw})

    @property
    def temperature(self) -> float:
        """``T`` of the activation: the DAM's for ``n`` with ``dam_init``, else 1."""
        return float(TrainConfig.paper(max(self.n, 2)).T_f) if self.dam_init else 1.0

    @property
    def name(self) -> str:
        """Artifact name, e.g. ``polynet_ce_n30_H2000_e20_seed0``."""
        return f"polynet_{self.objective}_n{self.n}_H{self.hidden}_e{self.epochs}_seed{self.seed}"


class PolyNet(nn.Module):
    """784 - hidden - 10 with hidden activation ``F_n(z / T)``, ``z = W v + b`` (the dual of DAM_n).

    ``forward`` returns the outputs before any squashing, (B, 10): logits for ``loss = "ce"``, the argument
    of ``tanh`` for ``"dam"``; either way their argmax is the prediction. Inputs ``v`` (B, 784) in [-1, 1].
    """

    def __init__(self, n: int, hidden: int, T: float = 1.0, loss: str = "ce") -> None:
        super().__init__()
        self.n = n
        self.loss = loss  # the training objective; the attacks descend the same one (objectives.model_loss)
        self.hidden = nn.Linear(N_PIXELS, hidden)
        self.out = nn.Linear(hidden, N_CLASSES)
        self.register_buffer("T", torch.tensor(float(T)))

    @property
    def device(self) -> torch.device:
        return self.T.device

    def energy_difference(self, v: torch.Tensor) -> torch.Tensor:
        """The outputs, (B, 10): the network seen as a :class:`~dam_utils.objectives.Classifier` (``Y = tanh``
        of them), so that the attacks of chapters 2-4 (eq. (4)-(5)) run on it unchanged."""
        return self(v)

    @torch.no_grad()
    def predict_energy(self, v: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """:meth:`energy_difference` of ``v`` (N, 784) in batches, without autograd; (N, 10)."""
        dev = self.T.device
        return torch.cat([self(v[i : i + batch_size].to(dev)) for i in range(0, len(v), batch_size)])

    def as_float64(self) -> PolyNet:
        """A float64 copy (the attacks' underflow fallback, :func:`dam_utils.objectives.float64_twin`)."""
        twin = PolyNet(self.n, self.hidden.out_features, float(self.T), self.loss).to(self.T.device)
        twin.load_state_dict(self.state_dict())
        return twin.double().eval()

    def activation(self, v: torch.Tensor) -> torch.Tensor:
        """Hidden units F_n(z / T), (B, hidden); the temperature is folded in so no power overflows."""
        return torch.relu(self.hidden(v) / self.T) ** self.n

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.out(self.activation(v))

    def predict(self, v: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Predicted labels, (N,), on the CPU."""
        return self.predict_energy(v, batch_size).argmax(1).cpu()

    def error_rate(self, v: torch.Tensor, labels: torch.Tensor) -> float:
        """Classification error in percent."""
        return 100.0 * (self.predict(v) != labels.cpu()).float().mean().item()

    @torch.no_grad()
    def dead_units(self, v: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """(hidden,) bool: units whose pre-activation is <= 0 on every image of ``v`` (N, 784). Like a dead
        memory of the DAM (:mod:`dam_utils.health`), such a unit is 0 on all data and gets no gradient."""
        dev = self.T.device
        z_max = torch.stack([self.hidden(v[i : i + batch_size].to(dev)).amax(0) for i in range(0, len(v), batch_size)])
        return (z_max.amax(0) <= 0).cpu()


def loss_fn(outputs: torch.Tensor, y: torch.Tensor, cfg: PolyNetConfig) -> torch.Tensor:
    """Mean over the batch of the objective: cross-entropy, or the DAM's ``sum_alpha (tanh(o) - t)^(2m)``
    (eq. 3) with ``t`` = +1 for the true class and -1 for the others. ``outputs`` (B, 10), ``y`` (B,)."""
    if cfg.objective == "ce":
        return nn.functional.cross_entropy(outputs, y)
    t = 2.0 * nn.functional.one_hot(y, N_CLASSES).to(outputs.dtype) - 1.0  # (B, 10)
    return ((torch.tanh(outputs) - t) ** (2 * cfg.m)).sum(1).mean()


@dataclass
class PolyNetResult:
    net: PolyNet
    config: PolyNetConfig
    history: list[dict[str, float]]
    wall_time_s: float
    environment: dict[str, Any]


def train_polynet(cfg: PolyNetConfig, data: Dataset, device: str | torch.device = "cpu",
                  progress: bool = True) -> PolyNetResult:
    """Train one network with Adam; the history records the loss, the training error counted during the
    epoch and the test error after it."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = PolyNet(cfg.n, cfg.hidden, cfg.temperature, cfg.objective).to(device)
    if cfg.dam_init:
        with torch.no_grad():
            net.hidden.weight.normal_(-0.3, 0.3).clamp_(-1.0, 1.0)
            net.hidden.bias.zero_()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    x, y = data.x_train, data.y_train
    per_epoch = len(y) // cfg.batch_size
    if cfg.batches_per_epoch:
        per_epoch = min(per_epoch, cfg.batches_per_epoch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * per_epoch)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=f"PolyNet {cfg.objective} n={cfg.n}", disable=not progress) \
        if tqdm else range(cfg.epochs)
    for epoch in bar:
        order = torch.randperm(len(y), generator=gen)[: per_epoch * cfg.batch_size].view(per_epoch, -1)
        total, wrong = 0.0, 0
        for idx in order:  # idx: (batch_size,)
            v, t = x[idx].to(device), y[idx].to(device)
            out = net(v)
            loss = loss_fn(out, t, cfg)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{cfg.name}: loss is {loss.item()} at epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            if cfg.dam_init:
                with torch.no_grad():
                    net.hidden.weight.clamp_(-1.0, 1.0)
                    net.hidden.bias.clamp_(-N_CLASSES, N_CLASSES)  # the DAM's -sum_gamma xc lies in [-10, 10]
            total += loss.item()
            wrong += int((out.argmax(1) != t).sum())
        row = {"epoch": epoch + 1, "loss": total / per_epoch,
               "train_error": 100.0 * wrong / (per_epoch * cfg.batch_size),
               "test_error": net.error_rate(data.x_test, data.y_test)}
        history.append(row)
        if tqdm and progress:
            bar.set_postfix(train=f"{row['train_error']:.2f}%", test=f"{row['test_error']:.2f}%")
    return PolyNetResult(net.cpu(), cfg, history, time.perf_counter() - t0, environment_info(device))


def table_key(n: int, objective: str) -> str:
    return f"{objective}_n{n}"


def save_polynet(result: PolyNetResult, data: Dataset, root: Path | None = None) -> dict[str, Any]:
    """Store weights, history and a manifest entry with provenance (:func:`~dam_utils.artifacts.store_weights`);
    the network becomes the committed one of ``manifest["polynets"]`` for its objective and power."""
    cfg, net = result.config, result.net
    info = {
        "kind": "polynet-weights", "config": cfg.to_dict(), "environment": result.environment,
        "epochs": len(result.history), "wall_time_s": round(result.wall_time_s, 1),
        "train_error": net.error_rate(data.x_train, data.y_train),
        "test_error": net.error_rate(data.x_test, data.y_test),
        "dead_units_pct": 100.0 * float(net.dead_units(data.x_train).float().mean()),
        "data": {"name": data.name, **dataset_fingerprint(data)},
    }
    arrays = {k: v.cpu().numpy() for k, v in net.state_dict().items()}
    return store_weights(cfg.name, arrays, result.history, info, root, TABLE, table_key(cfg.n, cfg.objective))


def load_polynet(name: str, root: Path | None = None) -> tuple[PolyNet, dict[str, Any]]:
    """Load verified weights by artifact name; returns the network (CPU, eval mode) and its entry."""
    path, entry = verified_path(name, root)
    cfg = PolyNetConfig(**entry["config"])
    with np.load(path) as z:
        state = {k: torch.from_numpy(z[k]) for k in z.files}
    net = PolyNet(cfg.n, cfg.hidden, cfg.temperature, cfg.objective)
    net.load_state_dict(state)
    return net.eval(), entry


def committed_polynets(root: Path | None = None) -> dict[str, str]:
    """``manifest["polynets"]``: ``"<objective>_n<n>"`` -> artifact name (empty if none is committed)."""
    return dict(read_manifest(root).get(TABLE, {}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train rectified-polynomial networks and store them in artifacts/.")
    ap.add_argument("--n", type=int, nargs="+", required=True)
    ap.add_argument("--objective", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    configs = [PolyNetConfig.for_power(args.profile, n, o) for n in args.n for o in args.objective]  # all checked first
    data = load_mnist()
    for cfg in configs:
        e = save_polynet(train_polynet(cfg, data, args.device), data)
        print(f"{cfg.name}: train={e['train_error']:.2f}% test={e['test_error']:.2f}% "
              f"({e['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
