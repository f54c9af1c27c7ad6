"""The published training algorithm (Krotov & Hopfield 2016, Appendix A), used by the 2018 paper.

* Loss, eq. (3): ``C = sum_examples sum_alpha (Y_alpha - t_alpha)^(2m)``, t = +1 / -1.
* Minibatches of 100 examples of each class (1000 in all); an epoch is 60 of them.
* Momentum: ``V <- p V - dC/dxi``; each memory (its 784 visible and 10 class weights
  together) moves by ``eps * V / max|V|``, so its largest change is exactly ``eps``.
* Learning rate ``eps(t) = eps0 * f^t`` (t = epoch); weights clipped to [-1, 1].
* ``beta = 1 / T^n``: T constant for large n; for small n T falls linearly from ``T_i``
  to ``T_f`` over the first ``ramp_epochs`` epochs, then stays at ``T_f``.
* Initial weights ~ N(-0.3, 0.3), clipped.

Train and commit the book's models from the command line with
``python -m dam_utils.book_models --n 30 --profile cpu`` (resumable checkpoints under ``runs/``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from .checkpoint import check_compatible, load_checkpoint, save_checkpoint
from .health import dead_memories
from .model import DAM, N_CLASSES, N_PIXELS, energy_difference, run_fast
from .provenance import environment_info
from .train_config import TrainConfig, TrainResult

try:  # tqdm is optional: the GPU machine has torch, numpy and scipy only
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

class Adversary(Protocol):
    """What :func:`train` calls on each minibatch to add adversarial images (chapter 6,
    :class:`dam_utils.adv_train.FGSMAdversary`): given the current model, the clean images ``v`` (B, N) and
    labels ``y`` (B,), return the minibatch to train on, clean rows first (2B, N) and (2B,).
    ``to_dict()`` describes it; it becomes part of the run's checkpointed configuration."""

    def __call__(self, model: DAM, v: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class TrainState:
    """The trainer's tensors: memories ``xi`` (K, 784), ``xc`` (K, 10) and their velocities."""

    xi: torch.Tensor
    xc: torch.Tensor
    v_xi: torch.Tensor
    v_xc: torch.Tensor

    @classmethod
    def from_weights(cls, weights: torch.Tensor, velocity: torch.Tensor | None = None) -> TrainState:
        """Split (K, N + 10) weights (and velocity, zero by default) into contiguous parts (N = 784 for images);
        a stack of models, (S, K, N + 10), splits the same way (:mod:`dam_utils.train_stack`)."""
        velocity = torch.zeros_like(weights) if velocity is None else velocity
        N = weights.shape[-1] - N_CLASSES
        return cls(weights[..., :N].contiguous(), weights[..., N:].contiguous(),
                    velocity[..., :N].contiguous(), velocity[..., N:].contiguous())

    def weights(self) -> torch.Tensor:
        return torch.cat([self.xi, self.xc], -1)  # (K, 794)

    def velocity(self) -> torch.Tensor:
        return torch.cat([self.v_xi, self.v_xc], -1)  # (K, 794)


@contextmanager
def _denormals_flushed(on: bool) -> Iterator[None]:
    """With ``on``, CPU float32 numbers below 1.2e-38 (subnormals) are flushed to zero inside the block
    (``TrainConfig.flush_denormal``: the updates and the per-epoch test error; x86 needs SSE3). Arithmetic on
    subnormals can be slower on CPUs (``benchmarks/subnormals.py`` measures it), and for large n, ``(a / T)^(n-1)``
    of a weakly active memory lands there (chapter 6, Fashion-MNIST)."""
    if not on:
        yield
        return
    if not torch.set_flush_denormal(True):
        raise RuntimeError("flush_denormal=True, but this CPU cannot flush subnormal numbers (it needs SSE3)")
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def init_weights(cfg: TrainConfig, device: torch.device | str = "cpu", n_inputs: int = N_PIXELS) -> torch.Tensor:
    """K x (n_inputs + 10) memories ~ N(init_mean, init_std), clipped to [-1, 1]; drawn on the CPU
    from ``seed`` so every device starts from the same weights. ``n_inputs`` is 784 for images (the
    DAMs of chapter 6 also read 200 CNN features)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    w = torch.empty(cfg.K, n_inputs + N_CLASSES, dtype=getattr(torch, cfg.dtype))
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
    """Eq. (3): sum over examples and classes of (Y - t)^(2m). ``outputs``, ``targets``: (B, C), or (S, B, C)
    for a stack of S models; returns the loss of each model, () or (S,)."""
    return ((outputs - targets) ** (2 * m)).sum((-2, -1))


def _targets(labels: torch.Tensor) -> torch.Tensor:
    """t = +1 for the label, -1 elsewhere: (..., C) for labels (...)."""
    return 2.0 * torch.nn.functional.one_hot(labels, N_CLASSES).float() - 1.0


def train_step(
    state: TrainState,
    v: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    T: float,
    eps: float,
) -> tuple[torch.Tensor, float]:
    """One minibatch update of ``state``: V <- p V - dC/dxi; xi <- clip(xi + eps V / max|V|).

    The visible parts ``xi`` (K, 784) and class parts ``xc`` (K, 10) are kept as separate
    contiguous tensors (a strided view of one (K, 794) array slows both GEMMs); the max in the
    normalisation runs over all 794 weights of a memory, as in the published algorithm.
    ``v``: (B, 784) images, ``y``: (B,) labels. Returns the outputs Y (before the update) and
    the loss C of eq. (3) on this minibatch, a 0-d tensor (no host synchronisation here).

    A stack of S independent models (:mod:`dam_utils.train_stack`) takes the same step: ``state`` holds
    (S, K, 784) and (S, K, 10), ``v`` (S, B, 784) and ``y`` (S, B), each model its own minibatch; Y is then
    (S, B, 10) and the loss (S,). The models share nothing: the sum of their losses has, for each model's
    weights, that model's gradient.

    With ``cfg.freeze_idle`` (NOT part of the published algorithm; off in the book's presets, for the
    reasons of chapter 1) a memory whose gradient on this minibatch is exactly zero keeps its weights and
    drops its velocity, instead of coasting at full speed ``eps`` in its last direction.
    """
    xi = state.xi.detach().requires_grad_(True)
    xc = state.xc.detach().requires_grad_(True)
    out = torch.tanh(energy_difference(v, xi, xc, cfg.n, T))  # (B, C)
    loss = loss_fn(out, _targets(y), cfg.m)  # () or (S,)
    g_xi, g_xc = torch.autograd.grad(loss.sum(), (xi, xc))  # (K, 784), (K, C)
    eps_t = torch.tensor(eps, dtype=state.xi.dtype, device=state.xi.device)  # a tensor: no recompile per epoch
    args = (state.xi, state.xc, state.v_xi, state.v_xc, g_xi, g_xc, cfg.p, eps_t, cfg.freeze_idle)
    with torch.no_grad():
        if state.xi.numel() >= _COMPILE_MIN:
            new = run_fast(lambda: _compiled_update()(*args), lambda: momentum_update(*args))
        else:
            new = momentum_update(*args)
    state.xi, state.xc, state.v_xi, state.v_xc = new
    return out.detach(), loss.detach()


def momentum_update(
    xi: torch.Tensor, xc: torch.Tensor, v_xi: torch.Tensor, v_xc: torch.Tensor,
    g_xi: torch.Tensor, g_xc: torch.Tensor, p: float, eps: torch.Tensor, freeze_idle: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The update of App. A: ``V <- p V - dC/dxi``, ``xi <- clip(xi + eps V / max|V|, -1, 1)``.

    ``xi`` (K, 784), ``xc`` (K, 10), their velocities and gradients (or (S, K, .) for a stack of models);
    ``eps`` a 0-d tensor. The max runs over all 794 weights of a memory. With ``freeze_idle`` a memory whose
    gradient is exactly zero
    drops its velocity and does not move. Returns the new ``(xi, xc, v_xi, v_xc)``. A pure function of
    whole tensors, so that torch.compile fuses it into a pass or two over the weights.
    """
    v_xi = p * v_xi - g_xi
    v_xc = p * v_xc - g_xc
    if freeze_idle:
        busy = ((g_xi != 0).any(-1) | (g_xc != 0).any(-1)).unsqueeze(-1)  # (K, 1)
        v_xi = torch.where(busy, v_xi, 0.0)
        v_xc = torch.where(busy, v_xc, 0.0)
    scale = torch.maximum(v_xi.abs().amax(-1), v_xc.abs().amax(-1)).clamp_min(1e-30).unsqueeze(-1)  # (K, 1)
    step = eps / scale  # (K, 1)
    return (xi + v_xi * step).clamp(-1.0, 1.0), (xc + v_xc * step).clamp(-1.0, 1.0), v_xi, v_xc


_COMPILE_MIN = 1_000_000  # visible weights (K x 784) from which compiling the update pays off
_UPDATE: list[Any] = []


def _compiled_update() -> Any:
    if not _UPDATE:
        _UPDATE.append(torch.compile(momentum_update, dynamic=False))
    return _UPDATE[0]


def epoch_checks(model: DAM, epoch: int, cfg: TrainConfig, x_train: torch.Tensor, x_test: torch.Tensor,
                 y_test: torch.Tensor, eval_every: int, health_every: int) -> dict[str, float]:
    """What the history records of ``model`` after ``epoch`` epochs (1-based): the test error every ``eval_every``
    epochs and the shares of dead memories on the training and test images every ``health_every`` epochs, both
    also after the last epoch (0 turns either off)."""
    out: dict[str, float] = {}
    last = epoch == cfg.epochs
    if eval_every and (epoch % eval_every == 0 or last):
        with _denormals_flushed(cfg.flush_denormal):
            out["test_error"] = model.error_rate(x_test, y_test)
    if health_every and (epoch % health_every == 0 or last):
        out["dead_train_%"] = 100.0 * dead_memories(model, x_train).float().mean().item()
        out["dead_test_%"] = 100.0 * dead_memories(model, x_test).float().mean().item()
    return out


def train(
    cfg: TrainConfig,
    data: Any,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    resume: bool = True,
    eval_every: int = 1,
    health_every: int = 10,
    progress: bool = True,
    stop_after: int | None = None,
    adversary: Adversary | None = None,
) -> TrainResult:
    """Train a DAM_n classifier with the published algorithm.

    ``data`` has ``x_train, y_train, x_test, y_test`` (see :func:`dam_utils.data.load_mnist`).
    With ``checkpoint`` set, state is written there every ``checkpoint_every`` epochs and at the
    end; with ``resume`` an existing checkpoint of the same configuration is continued
    (a foreign, corrupted or mismatched one raises :class:`~dam_utils.checkpoint.CheckpointError`).
    ``stop_after`` ends the run after that many epochs (used to test resuming). Every ``health_every``
    epochs (and at the end) the history records the share of dead memories on the training and test
    sets (:func:`dam_utils.health.dead_memories`); 0 turns that off.

    ``adversary`` (chapter 6) adds adversarial images to every minibatch, made from the current weights;
    ``train_error`` then counts the clean rows only and ``adv_train_error`` the adversarial ones, and the
    checkpoint's configuration includes ``adversary.to_dict()`` (a run never resumes with another adversary).
    """
    name = getattr(data, "name", cfg.dataset)
    if name != cfg.dataset:
        raise ValueError(f"the config says dataset={cfg.dataset!r} but the data is {name!r}: pass "
                         f"TrainConfig(..., dataset={name!r}) or the {cfg.dataset!r} data")
    device = torch.device(device)
    dt = getattr(torch, cfg.dtype)
    x_train, y_train = data.x_train.to(device, dt), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device, dt), data.y_test.to(device)

    # xi (K, N), xc (K, 10) and their velocities; N = 784 pixels, or the width of a feature set
    state = TrainState.from_weights(init_weights(cfg, device, x_train.shape[1]))
    history: list[dict[str, float]] = []
    env = environment_info(device)
    run_config = cfg.to_dict() if adversary is None else {**cfg.to_dict(), "adversary": adversary.to_dict()}
    start, wall_before = 0, 0.0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, map_location=device)
        check_compatible(saved["config"], run_config)
        state = TrainState.from_weights(saved["weights"].to(device, dt), saved["velocity"].to(device, dt))
        history, start, wall_before = list(saved["history"]), int(saved["epoch"]), float(saved["wall_time_s"])
        env["resumed_from_epoch"] = start

    def snapshot(epoch: int, wall: float) -> None:
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                dict(config=run_config, epoch=epoch, weights=state.weights().cpu(), velocity=state.velocity().cpu(),
                     history=history, wall_time_s=wall, environment=env),
            )

    t0 = time.perf_counter()
    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + stop_after)
    bar = tqdm(range(start, end), desc=f"DAM n={cfg.n}", disable=not progress, initial=start,
               total=cfg.epochs) if tqdm else range(start, end)
    for epoch in bar:
        T, eps = cfg.temperature(epoch), cfg.learning_rate(epoch)
        wrong, adv_wrong, seen, loss_sum = 0, 0, 0, 0.0
        with _denormals_flushed(cfg.flush_denormal):
            for idx in epoch_batches(y_train, cfg, epoch).to(device):
                v, y = x_train[idx], y_train[idx]
                if adversary is not None:  # clean rows first, then their adversarial images
                    v, y = adversary(DAM(state.xi, state.xc, cfg.n, T), v, y)
                out, loss = train_step(state, v, y, cfg, T, eps)
                loss = loss.item()
                pred, B = out.argmax(1), len(idx)
                wrong += (pred[:B] != y[:B]).sum().item()
                adv_wrong += (pred[B:] != y[B:]).sum().item()
                seen += B
                loss_sum += loss
        rec = dict(epoch=epoch + 1, T=T, eps=eps, loss=loss_sum / seen, train_error=100.0 * wrong / seen)
        if adversary is not None:
            rec["adv_train_error"] = 100.0 * adv_wrong / seen
        model = DAM(state.xi, state.xc, cfg.n, cfg.temperature(epoch + 1))
        rec.update(epoch_checks(model, epoch + 1, cfg, x_train, x_test, y_test, eval_every, health_every))
        rec["wall_time_s"] = wall_before + time.perf_counter() - t0
        history.append(rec)
        if tqdm and progress:
            bar.set_postfix(train=f"{rec['train_error']:.2f}%", test=f"{rec.get('test_error', float('nan')):.2f}%")
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == end:
            snapshot(epoch + 1, rec["wall_time_s"])
    wall = wall_before + time.perf_counter() - t0
    final = DAM(state.xi.clone(), state.xc.clone(), cfg.n, cfg.temperature(cfg.epochs))
    return TrainResult(model=final, history=history, wall_time_s=wall, config=cfg, environment=env)
