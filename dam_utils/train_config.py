"""What determines a trained DAM_n model: :class:`TrainConfig` with its presets, the
:class:`TrainResult` of a run, and the canonical artifact name of a model.

Kept apart from the trainer so that :mod:`dam_utils.artifacts` can describe models without
importing the training loop (no import cycle).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .model import DAM
from .params import PROFILES, check_choice

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
    p: float = 0.6  # momentum: the low end of 0.6-0.95; 0.9 kills memories (chapter 1)
    T_i: float = 540.0
    T_f: float = 540.0
    ramp_epochs: int = 200
    per_class: int = 100
    batches_per_epoch: int = 60
    init_mean: float = -0.3
    init_std: float = 0.3
    seed: int = 0
    dtype: str = "float32"
    freeze_idle: bool = False  # NOT in the published algorithm: see train_step
    dataset: str = "mnist"  # the ``name`` of the data the model is trained on (checked by ``train``)
    flush_denormal: bool = False  # NOT in the published algorithm: subnormals -> 0 while training (see train)

    @classmethod
    def paper(cls, n: int, **kw: Any) -> TrainConfig:
        """The published scale: K = 2000, 3000 epochs, 200-epoch temperature ramp (needs a GPU);
        momentum p = 0.6, the published update with no step outside it (``freeze_idle`` stays off:
        chapter 1 shows why)."""
        return dataclasses.replace(cls(n=n, **_per_n(n)), **kw)

    @classmethod
    def cpu(cls, n: int, **kw: Any) -> TrainConfig:
        """Same model, hyperparameters and 200-epoch temperature ramp as :meth:`paper`, 300 epochs
        instead of 3000 (the learning rate therefore ends at eps0 * 0.998^300 = 0.55 eps0, not
        0.0025 eps0). The 2016 paper's models first fell below 2 % test error after 158-312 epochs."""
        return dataclasses.replace(cls.paper(n), **{"epochs": 300, **kw})

    @classmethod
    def smoke(cls, n: int, **kw: Any) -> TrainConfig:
        """Tiny: proves every code path runs (K = 20, 2 epochs of 5 minibatches)."""
        tiny = {"K": 20, "epochs": 2, "ramp_epochs": 2, "batches_per_epoch": 5}
        return dataclasses.replace(cls.paper(n), **{**tiny, **kw})

    @classmethod
    def preset(cls, profile: str, n: int, **kw: Any) -> TrainConfig:
        check_choice("profile", profile, PROFILES)
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
    """What :func:`dam_utils.train.train` returns: the final model, the per-epoch history
    (errors, loss, dead-memory shares), wall time, config and environment."""

    model: DAM
    history: list[dict[str, float]]
    wall_time_s: float
    config: TrainConfig
    environment: dict[str, Any]


def model_name(cfg: TrainConfig) -> str:
    """Canonical artifact name of a trained model, e.g. ``dam_n30_K2000_e250_p60_seed0``.

    ``p60`` is the momentum p = 0.60; ``frz`` marks the ``freeze_idle`` option, ``ftz`` the ``flush_denormal``
    one; a data set other than MNIST is named before the seed (``..._p60_fashion_mnist_seed0``). (The first book
    models, trained with p = 0.9 before these tags existed, keep their names ``..._e180_seed0``.)
    """
    tags = f"_p{round(100 * cfg.p):02d}" + ("_frz" if cfg.freeze_idle else "")
    tags += "_ftz" if cfg.flush_denormal else ""
    data = "" if cfg.dataset == "mnist" else f"_{cfg.dataset}"
    return f"dam_n{cfg.n}_K{cfg.K}_e{cfg.epochs}{tags}{data}_seed{cfg.seed}"
