"""Why memories die, measured: the dead share against epoch for three training recipes.

The published update (Krotov & Hopfield 2016, App. A) moves every memory by exactly ``eps``
along its momentum ``V / max|V|``. When a memory's gradient is exactly 0 (it is active on no
image of the minibatch), ``V <- p V`` only shrinks, and the normalised step keeps its full length
``eps`` in the old direction until ``V`` underflows: the memory coasts on, deeper into the region
where ``a_mu <= 0`` on every image, and dies (:mod:`dam_utils.health`).

The study trains the same model (same seed, same minibatches) three ways and records the dead
share every few epochs:

* ``p = 0.9``: the first book models (coasting lasts ~650 steps, ~11 epochs);
* ``p = 0.6``: the low end of the published range (coasting lasts ~130 steps);
* ``p = 0.6`` with ``freeze_idle``: a memory with an exactly-zero gradient does not move and
  loses its velocity (outside the published algorithm; see :func:`dam_utils.train.train_step`).

Run: ``python -m dam_utils.dead_memory_study --profile cpu`` (writes
``artifacts/results/dead_memory_study.json`` with provenance).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .artifacts import register, verified_path
from .atomic import atomic_write_text
from .data import load_mnist
from .params import PROFILES, check_choice
from .paths import artifacts_dir
from .provenance import environment_info
from .train import train
from .train_config import TrainConfig

RESULT_NAME = "dead_memory_study"
RECIPES: dict[str, dict[str, Any]] = {
    "p=0.9": {"p": 0.9, "freeze_idle": False},
    "p=0.6": {"p": 0.6, "freeze_idle": False},
    "p=0.6, freeze_idle": {"p": 0.6, "freeze_idle": True},
}


@dataclass(frozen=True)
class DeadStudyConfig:
    """One power ``n`` trained ``epochs`` epochs with each recipe of :data:`RECIPES` (cpu preset
    of :class:`TrainConfig` otherwise), the dead share recorded every ``every`` epochs."""

    n: int = 30
    epochs: int = 40
    every: int = 5
    K: int = 2000

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"epochs": 300},
        "cpu": {},
        "smoke": {"epochs": 2, "every": 1, "K": 20},
    }

    @classmethod
    def preset(cls, profile: str, **kw: Any) -> DeadStudyConfig:
        check_choice("profile", profile, PROFILES)
        return cls(**{**cls._PRESETS[profile], **kw})

    def train_config(self, recipe: str, **kw: Any) -> TrainConfig:
        return TrainConfig.cpu(self.n, epochs=self.epochs, K=self.K, **RECIPES[recipe], **kw)


def run_study(cfg: DeadStudyConfig, data: Any, device: str = "cpu", progress: bool = True,
              recipes: tuple[str, ...] = tuple(RECIPES), **train_kw: Any) -> dict[str, Any]:
    """Train each recipe; returns ``{"config", "curves": {recipe: [{epoch, dead_train_%, dead_test_%,
    train_error, test_error}]}, "wall_time_s", "environment"}``."""
    t0, curves = time.perf_counter(), {}
    for recipe in recipes:
        tc = cfg.train_config(recipe, **train_kw)
        res = train(tc, data, device=device, progress=progress, eval_every=cfg.every, health_every=cfg.every)
        curves[recipe] = [
            {k: h[k] for k in ("epoch", "dead_train_%", "dead_test_%", "train_error", "test_error")}
            for h in res.history if "dead_train_%" in h
        ]
    return {"config": dataclasses.asdict(cfg), "curves": curves,
            "wall_time_s": round(time.perf_counter() - t0, 1), "environment": environment_info(device)}


def save_study(result: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    root = root or artifacts_dir()
    path = root / "results" / f"{RESULT_NAME}.json"
    atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True) + "\n")
    return register(RESULT_NAME, path, {"kind": "dead-memory-study", "config": result["config"],
                                        "wall_time_s": result["wall_time_s"],
                                        "environment": result["environment"]}, root)


def load_study(root: Path | None = None) -> dict[str, Any]:
    """The committed study, its SHA-256 verified against the manifest."""
    path, _ = verified_path(RESULT_NAME, root)
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    args = ap.parse_args(argv)
    result = run_study(DeadStudyConfig.preset(args.profile), load_mnist())
    entry = save_study(result)
    for recipe, curve in result["curves"].items():
        print(f"{recipe:>20}: " + "  ".join(f"e{c['epoch']} {c['dead_train_%']:.1f}%" for c in curve))
    print(f"wrote {entry['path']} ({result['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
