"""Adversarial training of DAM_n (chapter 6): the first of the two extensions proposed in section 6.

"The robustness ... should further increase if the DAM is trained on a mixture of clean images and adversarial
images, as in Goodfellow et al. 2014 and Nøkland 2015." We keep the published training algorithm
(:func:`dam_utils.train.train`: eq. (3), minibatches of 100 per class, momentum, the per-memory normalised
step) and change only what each minibatch holds: its 1000 clean images *and* their adversarial images, made from
the current weights (:class:`FGSMAdversary`). The loss is Goodfellow et al.'s ``J(x) + J(x_adv)`` (their alpha =
1/2 up to a factor, which the normalised step removes).

**Which adversarial images.** FGSM (:mod:`dam_utils.fgsm`) on the model's own loss, eq. (4) with its loss power
m, in the stable form that never underflows: one gradient per image, about the cost of the training step
itself. Chapter 3's images one step behind the boundary need a median of 21 (n = 2) to 47 (n = 30) gradient
steps per image (chapter 5's summaries) plus a bisection: 20-50 times the cost of an epoch, per epoch. FGSM is
also what Goodfellow et al. trained with, and Nøkland's adversarial gradient is the same step taken inside
backpropagation.

**A fine-tuning, and its control.** The runs start from the committed book model of that n (epoch 300, its
weights; the velocity, which the artifacts do not keep, starts at zero) and continue the schedule (the learning
rate keeps decaying as eps0 f^t, the temperature stays at T_f) for ``extra_epochs``. A *control* run continues the
same model for the same epochs on clean images only, so that a change in clean error can be told apart from the
effect of simply training longer. Both are resumable (:mod:`dam_utils.checkpoint`: the run's checkpoint starts as
the book model's weights and records the adversary). Run ``python -m dam_utils.adv_train --n 2 30``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from .artifacts import (
    ArtifactError,
    book_model_name,
    load_book_model,
    load_history,
    load_model,
    read_manifest,
    save_model,
)
from .checkpoint import save_checkpoint
from .data import load_mnist
from .fgsm import fgsm_direction, fgsm_images
from .model import DAM
from .params import PROFILES, Preset, bool_field, float_field, int_field
from .provenance import environment_info
from .train import train
from .train_config import TrainConfig, TrainResult, model_name

__all__ = ["TABLE", "AdvTrainConfig", "FGSMAdversary", "committed_adv_models", "fine_tune", "run_name",
           "save_fine_tuned", "table_key"]

#: ``manifest["adv_models"]["adv_n<n>" | "ctl_n<n>"]``: the adversarially fine-tuned models and their controls.
TABLE = "adv_models"


@dataclass(frozen=True)
class AdvTrainConfig(Preset):
    """A fine-tuning run (module doc). ``eps`` is the FGSM step on the [0, 1] pixel scale (the book's pixels move
    by 2 eps); ``adversarial=False`` is the control (clean images only)."""

    extra_epochs: int = int_field(300, 1, 10**4)
    eps: float = float_field(0.1, 0.0, 1.0, lo_inclusive=False)
    adversarial: bool = bool_field(True)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "cpu": {"extra_epochs": 20},
        "smoke": {"extra_epochs": 2},
    }


class FGSMAdversary:
    """Appends the FGSM images of the current model to a clean minibatch (:class:`dam_utils.train.Adversary`)."""

    def __init__(self, eps: float, m: int) -> None:
        self.eps, self.m = float(eps), int(m)

    def __call__(self, model: DAM, v: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        direction = fgsm_direction(model, v, y, self.m)  # signs of grad eq. (4) at the true label, on the CPU
        adv = fgsm_images(v, direction, self.eps).to(v.device, v.dtype)  # (B, N), clipped to [-1, 1]
        return torch.cat([v, adv]), torch.cat([y, y])

    def to_dict(self) -> dict[str, Any]:
        return {"method": "fgsm", "eps": self.eps, "m": self.m}


def table_key(n: int, adversarial: bool) -> str:
    return f"{'adv' if adversarial else 'ctl'}_n{n}"


def fine_tune(n: int, cfg: AdvTrainConfig, data: Any, device: str | torch.device = "cpu",
              checkpoint: str | Path | None = None, progress: bool = True, stop_after: int | None = None,
              start: tuple[DAM, dict[str, Any], list[dict[str, float]]] | None = None) -> TrainResult:
    """Continue the committed ``cpu`` book model of power ``n`` for ``cfg.extra_epochs`` epochs, with FGSM images
    (``cfg.adversarial``) or without (the control). ``start`` replaces the committed model by (model, manifest
    entry, history), e.g. a model trained here at ``smoke`` size. With ``checkpoint`` set the run is resumable:
    the file is first written from the starting weights (zero velocity), then :func:`dam_utils.train.train`
    continues it; ``stop_after`` ends the run early (to test the resume)."""
    if checkpoint is None:
        with tempfile.TemporaryDirectory() as tmp:
            return fine_tune(n, cfg, data, device, Path(tmp) / "run.ckpt", progress, stop_after, start)
    model, e, history = start if start is not None else (*load_book_model(n), load_history(book_model_name(n)))
    base = TrainConfig(**e["config"])
    run = TrainConfig(**{**base.to_dict(), "epochs": base.epochs + cfg.extra_epochs})
    adversary = FGSMAdversary(cfg.eps, run.m) if cfg.adversarial else None
    ckpt = Path(checkpoint)
    if not ckpt.exists():  # the run starts as the book model: its weights, zero velocity, its history
        weights = torch.cat([model.xi, model.xc], 1).cpu()
        config = run.to_dict() if adversary is None else {**run.to_dict(), "adversary": adversary.to_dict()}
        save_checkpoint(ckpt, dict(config=config, epoch=base.epochs, weights=weights,
                                   velocity=torch.zeros_like(weights), history=list(history),
                                   wall_time_s=float(e.get("wall_time_s", 0.0)),
                                   environment=environment_info(device)))
    return train(run, data, device=device, checkpoint=ckpt, checkpoint_every=5, progress=progress,
                 stop_after=stop_after, adversary=adversary)


def run_name(res: TrainResult, cfg: AdvTrainConfig) -> str:
    """``dam_n30_K2000_e330_p60_seed0_fgsm0.1`` (adversarial) or ``..._control`` (clean only)."""
    return model_name(res.config) + (f"_fgsm{cfg.eps:g}" if cfg.adversarial else "_control")


def save_fine_tuned(res: TrainResult, cfg: AdvTrainConfig, data: Any, root: Path | None = None) -> dict[str, Any]:
    """Store a finished run (weights, history, manifest entry with the fine-tuning's config) and make it
    ``manifest["adv_models"][table_key(n, adversarial)]``."""
    return save_model(res, data, root, table=TABLE, name=run_name(res, cfg), extra={"fine_tuning": cfg.to_dict()},
                      key=table_key(res.config.n, cfg.adversarial))


def committed_adv_models(n_values: Any = (2, 30), root: Path | None = None) -> dict[str, tuple[DAM, dict[str, Any]]]:
    """The committed fine-tuned models, keyed ``adv_n<n>`` / ``ctl_n<n>``; a missing one raises
    :class:`~dam_utils.artifacts.ArtifactError` naming the command that makes it."""
    table = read_manifest(root).get(TABLE, {})
    out = {}
    for n in n_values:
        for adversarial in (True, False):
            key = table_key(int(n), adversarial)
            if key not in table:
                raise ArtifactError(f"no committed {key!r} model: run `python -m dam_utils.adv_train --n {n}` "
                                    "and commit artifacts/, or run chapter 6 with recompute=True")
            out[key] = load_model(table[key], root=root)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Fine-tune the book's DAMs with FGSM images, and their controls.")
    ap.add_argument("--n", type=int, nargs="+", default=[2, 30])
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--run-dir", default="runs/ch6")
    args = ap.parse_args(argv)
    data = load_mnist()
    for n in args.n:
        for adversarial in (True, False):
            cfg = AdvTrainConfig.preset(args.profile, adversarial=adversarial)
            ckpt = Path(args.run_dir) / f"{table_key(n, adversarial)}_{args.profile}.ckpt"
            res = fine_tune(n, cfg, data, args.device, ckpt)
            e = save_fine_tuned(res, cfg, data)
            print(f"{e['path']}: test error {e['test_error']:.2f} %, dead {e['health']['dead_train_%']:.1f} %")


if __name__ == "__main__":
    main()
