"""The published training algorithm (Krotov & Hopfield 2016, Appendix A), used by the 2018 paper.

* Loss, eq. (3): ``C = sum_examples sum_alpha (Y_alpha - t_alpha)^(2m)``, t = +1 / -1.
* Minibatches of 100 examples of each class (1000 in all); an epoch is 60 of them.
* Momentum: ``V <- p V - dC/dxi``; each memory (its 784 visible and 10 class weights
  together) moves by ``eps * V / max|V|``, so its largest change is exactly ``eps``.
* Learning rate ``eps(t) = eps0 * f^t`` (t = epoch); weights clipped to [-1, 1].
* ``beta = 1 / T^n``: T constant for large n; for small n T falls linearly from ``T_i``
  to ``T_f`` over the first ``ramp_epochs`` epochs, then stays at ``T_f``.
* Initial weights ~ N(-0.3, 0.3), clipped.

Run from the command line: ``python -m dam_utils.train --n 30 --profile cpu``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import check_compatible, load_checkpoint, save_checkpoint
from .model import DAM, N_CLASSES, N_PIXELS, energy_difference
from .provenance import environment_info

try:  # tqdm is optional: the GPU machine has torch, numpy and scipy only
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

PROFILES = ("paper", "cpu", "smoke")

# Per-n hyperparameters, each inside the ranges of Krotov & Hopfield (2016), Appendix A:
# m in {2,3,4} for small n and ~30 for large n; 0.6 <= p <= 0.95; 0.01 <= eps0 <= 0.04;
# small n: 250 <= T_i <= 400, 30 <= T_f <= 100; large n: 500 <= T <= 700. The reasons are
# given in chapter 1.
_PER_N: dict[int, dict[str, float]] = {
    2: dict(m=2, T_i=400.0, T_f=70.0),
    3: dict(m=3, T_i=400.0, T_f=70.0),
    20: dict(m=30, T_i=540.0, T_f=540.0),
    30: dict(m=30, T_i=650.0, T_f=650.0),
}


def _per_n(n: int) -> dict[str, float]:
    if n in _PER_N:
        return _PER_N[n]
    if n <= 5:  # small-n regime: temperature ramp, low loss power
        return dict(m=3, T_i=400.0, T_f=70.0)
    # large-n regime: constant temperature; interpolate 540 (n=20) .. 650 (n=30)
    T = min(700.0, max(500.0, 540.0 + (n - 20) * 11.0))
    return dict(m=30 if n >= 10 else 4, T_i=T, T_f=T)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model. Presets: :meth:`paper`, :meth:`cpu`, :meth:`smoke`."""

    n: int
    K: int = 2000
    m: int = 30
    epochs: int = 3000
    eps0: float = 0.04
    f: float = 0.998
    p: float = 0.9
    T_i: float = 540.0
    T_f: float = 540.0
    ramp_epochs: int = 200
    per_class: int = 100
    batches_per_epoch: int = 60
    init_mean: float = -0.3
    init_std: float = 0.3
    seed: int = 0
    dtype: str = "float32"

    @classmethod
    def paper(cls, n: int, **kw: Any) -> TrainConfig:
        """The published scale: K = 2000, 3000 epochs, 200-epoch temperature ramp (needs a GPU)."""
        return dataclasses.replace(cls(n=n, **_per_n(n)), **kw)

    @classmethod
    def cpu(cls, n: int, **kw: Any) -> TrainConfig:
        """Same model and hyperparameters, 180 epochs; the small-n ramp is shortened to 120 epochs
        so that T sits at T_f for the last third of the run (the 2016 paper's models first fell
        below 2 % test error after 158-312 epochs)."""
        return dataclasses.replace(cls.paper(n), **{"epochs": 180, "ramp_epochs": 120, **kw})

    @classmethod
    def smoke(cls, n: int, **kw: Any) -> TrainConfig:
        """Tiny: proves every code path runs (K = 20, 2 epochs of 5 minibatches)."""
        tiny = {"K": 20, "epochs": 2, "ramp_epochs": 2, "batches_per_epoch": 5}
        return dataclasses.replace(cls.paper(n), **{**tiny, **kw})

    @classmethod
    def preset(cls, profile: str, n: int, **kw: Any) -> TrainConfig:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        return getattr(cls, profile)(n, **kw)

    def temperature(self, epoch: int) -> float:
        """T at a given epoch: linear ramp T_i -> T_f over ``ramp_epochs``, then constant."""
        if self.ramp_epochs <= 0 or epoch >= self.ramp_epochs:
            return self.T_f
        return self.T_i + (self.T_f - self.T_i) * epoch / self.ramp_epochs

    def learning_rate(self, epoch: int) -> float:
        """eps(t) = eps0 * f^t."""
        return self.eps0 * self.f**epoch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    model: DAM
    history: list[dict[str, float]]
    wall_time_s: float
    config: TrainConfig
    environment: dict[str, Any]


def init_weights(cfg: TrainConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """K x (784 + 10) memories ~ N(init_mean, init_std), clipped to [-1, 1]; drawn on the CPU
    from ``seed`` so every device starts from the same weights."""
    gen = torch.Generator().manual_seed(cfg.seed)
    w = torch.empty(cfg.K, N_PIXELS + N_CLASSES, dtype=getattr(torch, cfg.dtype))
    w.normal_(cfg.init_mean, cfg.init_std, generator=gen).clamp_(-1.0, 1.0)
    return w.to(device)


def epoch_batches(labels: torch.Tensor, cfg: TrainConfig, epoch: int) -> torch.Tensor:
    """Indices of the epoch's minibatches, (batches_per_epoch, 10 * per_class).

    Each class contributes ``per_class`` examples to every minibatch, drawn from its own
    random permutation (repeated if the class is smaller than the epoch needs). The
    permutation depends only on (seed, epoch), which makes resumed runs exact.
    """
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    need = cfg.batches_per_epoch * cfg.per_class
    labels = labels.cpu()
    cols = []
    for c in range(N_CLASSES):
        idx = torch.nonzero(labels == c).squeeze(1)
        reps = math.ceil(need / len(idx))
        perm = torch.cat([idx[torch.randperm(len(idx), generator=gen)] for _ in range(reps)])[:need]
        cols.append(perm.view(cfg.batches_per_epoch, cfg.per_class))
    return torch.cat(cols, 1)  # (batches, 10 * per_class)


def loss_fn(outputs: torch.Tensor, targets: torch.Tensor, m: int) -> torch.Tensor:
    """Eq. (3): sum over examples and classes of (Y - t)^(2m)."""
    return ((outputs - targets) ** (2 * m)).sum()


def _targets(labels: torch.Tensor) -> torch.Tensor:
    t = -torch.ones(len(labels), N_CLASSES, device=labels.device)
    t[torch.arange(len(labels), device=labels.device), labels] = 1.0
    return t


def train_step(
    weights: torch.Tensor,
    velocity: torch.Tensor,
    v: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    T: float,
    eps: float,
) -> tuple[torch.Tensor, float]:
    """One minibatch update, in place: V <- p V - dC/dxi; xi <- clip(xi + eps V / max|V|).

    ``weights``, ``velocity``: (K, 784 + 10) memories. Returns the outputs Y (before the
    update) and the loss C of eq. (3) on this minibatch.
    """
    w = weights.detach().requires_grad_(True)
    out = torch.tanh(energy_difference(v, w[:, :N_PIXELS], w[:, N_PIXELS:], cfg.n, T))
    loss = loss_fn(out, _targets(y), cfg.m)
    (grad,) = torch.autograd.grad(loss, w)
    with torch.no_grad():
        velocity.mul_(cfg.p).sub_(grad)
        scale = velocity.abs().amax(1, keepdim=True).clamp_min(1e-30)  # per-memory max |V|, (K, 1)
        weights.add_(velocity / scale, alpha=eps).clamp_(-1.0, 1.0)
    return out.detach(), loss.item()


def train(
    cfg: TrainConfig,
    data: Any,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    resume: bool = True,
    eval_every: int = 1,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a DAM_n classifier with the published algorithm.

    ``data`` has ``x_train, y_train, x_test, y_test`` (see :func:`dam_utils.data.load_mnist`).
    With ``checkpoint`` set, state is written there every ``checkpoint_every`` epochs and at the
    end; with ``resume`` an existing checkpoint of the same configuration is continued
    (a foreign, corrupted or mismatched one raises :class:`~dam_utils.checkpoint.CheckpointError`).
    ``stop_after`` ends the run after that many epochs (used to test resuming).
    """
    device = torch.device(device)
    dt = getattr(torch, cfg.dtype)
    x_train, y_train = data.x_train.to(device, dt), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device, dt), data.y_test.to(device)

    weights = init_weights(cfg, device)  # (K, 794): visible | class parts
    velocity = torch.zeros_like(weights)
    history: list[dict[str, float]] = []
    env = environment_info(device)
    start, wall_before = 0, 0.0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location=device)
        check_compatible(state["config"], cfg.to_dict())
        weights, velocity = state["weights"].to(device, dt), state["velocity"].to(device, dt)
        history, start, wall_before = list(state["history"]), int(state["epoch"]), float(state["wall_time_s"])
        env["resumed_from_epoch"] = start

    def snapshot(epoch: int, wall: float) -> None:
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                dict(config=cfg.to_dict(), epoch=epoch, weights=weights.cpu(), velocity=velocity.cpu(),
                     history=history, wall_time_s=wall, environment=env),
            )

    t0 = time.perf_counter()
    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + stop_after)
    bar = tqdm(range(start, end), desc=f"DAM n={cfg.n}", disable=not progress, initial=start,
               total=cfg.epochs) if tqdm else range(start, end)
    for epoch in bar:
        T, eps = cfg.temperature(epoch), cfg.learning_rate(epoch)
        wrong, seen, loss_sum = 0, 0, 0.0
        for idx in epoch_batches(y_train, cfg, epoch).to(device):
            y = y_train[idx]
            out, loss = train_step(weights, velocity, x_train[idx], y, cfg, T, eps)
            wrong += (out.argmax(1) != y).sum().item()
            seen += len(y)
            loss_sum += loss
        rec = dict(epoch=epoch + 1, T=T, eps=eps, loss=loss_sum / seen, train_error=100.0 * wrong / seen)
        if eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == cfg.epochs):
            model = DAM(weights[:, :N_PIXELS], weights[:, N_PIXELS:], cfg.n, cfg.temperature(epoch + 1))
            rec["test_error"] = model.error_rate(x_test, y_test)
        rec["wall_time_s"] = wall_before + time.perf_counter() - t0
        history.append(rec)
        if tqdm and progress:
            bar.set_postfix(train=f"{rec['train_error']:.2f}%", test=f"{rec.get('test_error', float('nan')):.2f}%")
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == end:
            snapshot(epoch + 1, rec["wall_time_s"])
    wall = wall_before + time.perf_counter() - t0
    final = DAM(weights[:, :N_PIXELS].clone(), weights[:, N_PIXELS:].clone(), cfg.n, cfg.temperature(cfg.epochs))
    return TrainResult(model=final, history=history, wall_time_s=wall, config=cfg, environment=env)


def main(argv: list[str] | None = None) -> None:
    from .data import load_mnist
    from .params import validate_params

    ap = argparse.ArgumentParser(description="Train a DAM_n classifier and store it under artifacts/.")
    ap.add_argument("--n", type=int, nargs="+", required=True, help="power(s) of the interaction vertex")
    ap.add_argument("--profile", default="cpu", help="paper | cpu | smoke")
    ap.add_argument("--K", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--run-dir", default="runs", help="where checkpoints go")
    ap.add_argument("--no-save", action="store_true", help="only write the checkpoint, not artifacts/")
    args = ap.parse_args(argv)
    kw = dict(profile=args.profile, n_values=args.n, seed=args.seed, device=args.device)
    if args.K is not None:
        kw["K"] = args.K
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    params = validate_params(**kw)
    data = load_mnist()
    for n in params.n_values:
        over = {k: v for k, v in dict(K=args.K, epochs=args.epochs, seed=args.seed).items() if v is not None}
        cfg = TrainConfig.preset(args.profile, n, **over)
        ckpt = Path(args.run_dir) / f"{model_name(cfg)}.ckpt"
        res = train(cfg, data, device=params.torch_device, checkpoint=ckpt, checkpoint_every=5)
        if not args.no_save:
            from .artifacts import save_model

            save_model(res, data)


def model_name(cfg: TrainConfig) -> str:
    """Canonical artifact name of a trained model, e.g. ``dam_n30_K2000_e180_seed0``."""
    return f"dam_n{cfg.n}_K{cfg.K}_e{cfg.epochs}_seed{cfg.seed}"


if __name__ == "__main__":
    main()
