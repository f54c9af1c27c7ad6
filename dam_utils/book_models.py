"""The one way a chapter gets its models: load the committed ones, or train them here.

Every chapter calls :func:`obtain_models` in its set-up cell::

    cm = obtain_models(P.n_values, P.profile, data, device=P.torch_device, recompute=P.recompute)
    cm.models[30], cm.loss_power[30], cm.entries[30]

* ``recompute=True`` or ``profile="smoke"``: each model is trained here with
  ``TrainConfig.preset(profile, n, K=..., epochs=..., seed=...)`` (nothing is written to disk).
* otherwise the committed model of that profile is loaded and its SHA-256 verified. The ``cpu``
  models are ``manifest["book_models"]``; the ``paper`` (3000-epoch, GPU) models are
  ``manifest["paper_models"]``. A profile or power with no committed model fails with a message
  that names the command to run; a ``paper`` request never silently falls back to ``cpu`` models.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .artifacts import MODEL_TABLES, ArtifactError, book_model_name, load_book_model, load_history, save_model
from .data import load_fashion_mnist, load_mnist
from .model import DAM
from .params import PROFILES, check_choice, validate_params
from .train import train
from .train_config import TrainConfig, model_name

#: ``manifest["fashion_models"][str(n)]``: chapter 6's DAMs trained on Fashion-MNIST (``cpu`` preset, fewer epochs).
FASHION_TABLE = "fashion_models"


@dataclass
class ChapterModels:
    """The models of a chapter, keyed by n: the DAM, its loss power m (eq. 3, needed by the attacks)
    and its record (manifest entry of a committed model; config, epochs, wall time of one trained here)."""

    models: dict[int, DAM] = field(default_factory=dict)
    loss_power: dict[int, int] = field(default_factory=dict)
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    histories: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    trained_here: bool = False


def obtain_models(
    n_values: Sequence[int],
    profile: str,
    data: Any,
    device: torch.device | str = "cpu",
    recompute: bool = False,
    K: int | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    root: Path | None = None,
) -> ChapterModels:
    """Load the committed models of ``profile`` for ``n_values``, or train them here (see module doc).

    ``K``, ``epochs``, ``seed`` override the preset when training here. When loading, ``K`` and
    ``epochs`` must be ``None`` or equal to the committed model's, so a chapter never shows a model
    other than the one its parameters describe; ``seed`` then seeds only the chapter's own random
    draws (the committed models record their training seed in their manifest entry).
    """
    check_choice("profile", profile, PROFILES)
    overrides = {k: v for k, v in dict(K=K, epochs=epochs, seed=seed).items() if v is not None}
    out = ChapterModels(trained_here=recompute or profile == "smoke")
    for n in (int(n) for n in n_values):
        if out.trained_here:
            cfg = TrainConfig.preset(profile, n, **overrides)
            res = train(cfg, data, device=device, progress=False)
            out.models[n], out.loss_power[n], out.histories[n] = res.model, cfg.m, res.history
            out.entries[n] = {"config": cfg.to_dict(), "epochs": len(res.history),
                              "wall_time_s": res.wall_time_s, "environment": res.environment}
            continue
        model, entry = load_book_model(n, device, root, profile)
        differ = {k: v for k, v in overrides.items() if k != "seed" and entry["config"].get(k) != v}
        if differ:
            raise ArtifactError(
                f"the committed {profile!r} model for n={n} has "
                + ", ".join(f"{k}={entry['config'].get(k)}" for k in differ)
                + f", not {differ}: run the chapter with recompute=True to train that model here"
            )
        out.models[n], out.loss_power[n], out.entries[n] = model, int(entry["config"]["m"]), entry
        out.histories[n] = load_history(book_model_name(n, root, profile), root)
    return out


def main(argv: list[str] | None = None) -> None:
    """Train DAM_n models with a preset (resumable checkpoints in ``--run-dir``) and commit them."""
    ap = argparse.ArgumentParser(description="Train the book's DAM_n models and store them under artifacts/.")
    ap.add_argument("--n", type=int, nargs="+", required=True, help="power(s) of the interaction vertex")
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--K", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--run-dir", default="runs", help="where checkpoints go")
    ap.add_argument("--no-save", action="store_true", help="only write the checkpoint, not artifacts/")
    ap.add_argument("--fashion", action="store_true",
                    help="train on Fashion-MNIST (chapter 6): the model goes to manifest['fashion_models']")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="flush subnormal numbers to zero in the updates (chapter 6; not the published algorithm)")
    args = ap.parse_args(argv)
    over = {k: v for k, v in dict(K=args.K, epochs=args.epochs, seed=args.seed).items() if v is not None}
    params = validate_params(profile=args.profile, n_values=args.n, device=args.device, **over)
    data = load_fashion_mnist() if args.fashion else load_mnist()
    # a preset's own models become the committed ones; anything overridden is stored beside them
    table = MODEL_TABLES.get(args.profile) if not over or over == {"seed": 0} else None
    if args.fashion:
        table = FASHION_TABLE if args.profile == "cpu" else None
    for n in params.n_values:
        cfg = TrainConfig.preset(args.profile, n, dataset=data.name, flush_denormal=args.flush_denormal, **over)
        ckpt = Path(args.run_dir) / f"{model_name(cfg)}.ckpt"
        res = train(cfg, data, device=params.torch_device, checkpoint=ckpt, checkpoint_every=5)
        if not args.no_save:
            e = save_model(res, data, table=table)
            print(f"{e['path']}: test error {e['test_error']:.2f} %, dead {e['health']['dead_train_%']:.1f} %"
                  + (f" -> manifest[{table!r}]" if table else ""))


if __name__ == "__main__":
    main()
