"""Internal health of a DAM_n classifier: memories that can no longer learn.

A memory mu enters eq. (1) only through ``F_n(a_mu + 2 xc^mu_alpha) - F_n(a_mu)`` with
``a_mu = xi^mu . v - sum_gamma xc^mu_gamma``. Where ``a_mu + 2 max_alpha xc^mu_alpha <= 0``
both terms and their derivatives are exactly 0. We call a memory **dead** when its argument
``a_mu <= 0`` for every image of a data set (the definition used in issue 9 and chapter 1):
such a memory contributes nothing on that data apart from the classes with positive class
weights large enough to lift ``a_mu + 2 xc_alpha`` above 0, and, in training, receives no
gradient from the ``F_n(a_mu)`` term. :func:`silent_memories` is the stricter test (no output
term is non-zero on any image), so that a memory can be dead but not silent, never the reverse.

A dead memory never changes a prediction on real digits, but off the data manifold (noise,
rubbish descents) it can dominate: chapter 1 shows how, and chapter 2 counts it.
"""

from __future__ import annotations

from typing import Any

import torch

from .model import DAM


@torch.no_grad()
def memory_arguments_max(model: DAM, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """``max_images a_mu`` and ``max_images max_alpha (a_mu + 2 xc_alpha)`` per memory; two (K,) tensors.

    ``x``: (N, 784) images in [-1, 1]. Computed in batches on the model's device.
    """
    xi, xc = model.xi, model.xc
    s = xc.sum(1)  # (K,)
    lift = 2.0 * xc.max(1).values.clamp(min=0)  # (K,): the largest class term 2 xc_alpha
    best = torch.full((model.K,), -float("inf"), dtype=xi.dtype, device=xi.device)
    for i in range(0, len(x), batch_size):
        a = x[i : i + batch_size].to(xi.device, xi.dtype) @ xi.T - s  # (B, K)
        best = torch.maximum(best, a.amax(0))
    return best.cpu(), (best + lift).cpu()


def dead_memories(model: DAM, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """(K,) bool: memory mu is dead when ``a_mu <= 0`` for every image in ``x`` (N, 784)."""
    a_max, _ = memory_arguments_max(model, x, batch_size)
    return a_max <= 0


def silent_memories(model: DAM, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """(K,) bool: no term of eq. (1) is non-zero on any image (``a_mu + 2 xc_alpha <= 0`` for all alpha)."""
    _, lifted = memory_arguments_max(model, x, batch_size)
    return lifted <= 0


def positive_class_weights(model: DAM) -> torch.Tensor:
    """(K,) int: how many of each memory's 10 class weights ``xc^mu_alpha`` are > 0.

    A healthy trained memory votes for one class (one positive weight); the dead memories
    of the p = 0.9 models end as inverted digits with 5-7 positive class weights.
    """
    return (model.xc > 0).sum(1).cpu()


@torch.no_grad()
def top_contributors(model: DAM, v: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(N,) index of the memory with the largest term ``F_n((a_mu + 2 xc_alpha)/T) - F_n(a_mu/T)`` of
    eq. (1) in ``D_alpha`` for each image ``v`` (N, 784) and its class ``alpha`` (N,): the memory that
    pushes that class up the most (chapter 2 asks whether it is a dead one)."""
    v = v.to(model.xi.device, model.xi.dtype)
    a = (v @ model.xi.T - model.xc.sum(1)) / model.T  # (N, K), temperature folded in
    lift = 2.0 * model.xc[:, alpha.to(model.xi.device)].T / model.T  # (N, K)
    terms = (a + lift).clamp(min=0) ** model.n - a.clamp(min=0) ** model.n  # (N, K)
    return terms.argmax(1).cpu()


def captured_by_dead(model: DAM, v: torch.Tensor, alpha: torch.Tensor, x_train: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the largest contributor to class ``alpha`` of image ``v`` (:func:`top_contributors`) is a
    memory that is dead on ``x_train`` (chapters 1 and 2 count rubbish descents taken over this way)."""
    return dead_memories(model, x_train)[top_contributors(model, v, alpha)]


def without_dead(model: DAM, x: torch.Tensor) -> DAM:
    """The same model with its memories that are dead on ``x`` (N, 784) removed."""
    alive = ~dead_memories(model, x)
    return DAM(model.xi[alive], model.xc[alive], model.n, model.T)


def one_vote_share(report: dict[str, Any]) -> float:
    """Percent of the live memories of a :func:`health_report` with exactly one positive class weight
    (memories that can vote for a single class only); NaN when no memory is alive."""
    live = report["positive_class_weights_live"]
    return 100.0 * live[1] / sum(live) if sum(live) else float("nan")


def health_report(model: DAM, x_train: torch.Tensor, x_test: torch.Tensor) -> dict[str, Any]:
    """The numbers chapter 1 and the manifest record for a model.

    * ``dead_train_%`` / ``dead_test_%``: share of dead memories on the training / test images;
    * ``silent_train_%``: share of memories with no non-zero term on any training image;
    * ``positive_class_weights_live`` / ``_dead``: histogram (index = number of positive class
      weights, 0..10) over the live and the dead memories (dead on the training set).
    """
    a_max, lifted = memory_arguments_max(model, x_train)  # one pass over the training set for both tests
    dead_train, silent = a_max <= 0, lifted <= 0
    dead_test = dead_memories(model, x_test)
    pos = positive_class_weights(model)
    hist = lambda mask: torch.bincount(pos[mask], minlength=11).tolist()  # noqa: E731
    return {
        "dead_train_%": 100.0 * dead_train.float().mean().item(),
        "dead_test_%": 100.0 * dead_test.float().mean().item(),
        "silent_train_%": 100.0 * silent.float().mean().item(),
        "positive_class_weights_live": hist(~dead_train),
        "positive_class_weights_dead": hist(dead_train),
    }
