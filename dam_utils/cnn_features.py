"""A DAM on convolutional features (chapter 6): the second extension proposed in section 6.

"One could use a DAM on top of the convolutional layers of a deep network." The talk (seed 002) reports it on
ImageNet (VGG16 features + DAM, 69 %); here it is done at MNIST size with the base CNN of appendix B
(:class:`dam_utils.cnn.BaseCNN`, trained on MNIST or Fashion-MNIST):

* **The features** (:class:`FeatureMap`): the CNN's penultimate layer, ``fc`` after its ReLU (200 units, >= 0),
  mapped onto the DAM's visible range [-1, 1] as ``v_i = 2 min(f_i / s_i, 1) - 1``, where ``s_i`` is the
  ``quantile`` of unit i on the training images (a unit that is never active gets ``s_i = 1`` and stays at -1,
  as a background pixel does). The 99th percentile, not the maximum, so that one outlier does not squash a unit.
* **The DAM** is trained on the features of the training images with the published algorithm
  (:func:`dam_utils.train.train`, ``TrainConfig.dataset = "<data>_cnn_features"``), with the image DAM's
  hyperparameters except the temperatures, rescaled so that the untrained model's outputs start on the same
  scale (:func:`feature_config`), and a shorter schedule at ``cpu`` size (:data:`FEATURE_EPOCHS`).
* **Two image-level classifiers** for the attacks (:mod:`dam_utils.deform`, :mod:`dam_utils.fgsm`): the CNN with
  its own softmax head (:class:`CNNSoftmax`, objective cross-entropy) and the CNN's features read by the DAM
  (:class:`CNNDAM`, objective eq. (4)). Both take the book's images, pixels in [-1, 1], (B, 784); the CNN sees
  them mapped to [0, 1].

Nothing here writes files: :mod:`dam_utils.extensions` trains, caches and checks.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .cnn import BaseCNN
from .data import Dataset
from .data_sources import sha256_array
from .model import DAM
from .train import init_weights
from .train_config import TrainConfig

__all__ = ["CNNDAM", "CNNSoftmax", "FeatureMap", "FeatureSet", "feature_config", "feature_set"]

FEATURE_UNITS = 200  # BaseCNN.fc


@dataclass
class FeatureMap:
    """Images (B, 784) in [-1, 1] -> CNN features (B, 200) in [-1, 1]: ``2 min(relu(fc) / scale, 1) - 1``."""

    cnn: BaseCNN
    scale: torch.Tensor  # (200,) > 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        f = self.cnn.activations((v + 1.0) / 2.0)["fc"]  # (B, 200), >= 0
        return 2.0 * torch.minimum(f / self.scale, torch.ones_like(f)) - 1.0

    def as_float64(self) -> FeatureMap:
        return FeatureMap(copy.deepcopy(self.cnn).double(), self.scale.double())


@torch.no_grad()
def _fc(cnn: BaseCNN, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """The CNN's ``fc`` activations (after ReLU) of images ``x`` in [-1, 1]; (N, 200)."""
    return torch.cat([cnn.activations((x[i : i + batch_size] + 1.0) / 2.0)["fc"] for i in range(0, len(x), batch_size)])


def _scale(f_train: torch.Tensor, quantile: float) -> torch.Tensor:
    scale = torch.quantile(f_train, quantile, dim=0)  # (200,)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


@dataclass(frozen=True)
class FeatureSet:
    """The features of a data set, the DAM's training data (same attributes as :class:`~dam_utils.data.Dataset`;
    ``x_*`` are (n, 200) in [-1, 1])."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    source: str

    def fingerprint(self) -> dict[str, str]:
        """SHA-256 of the four arrays (features as float32)."""
        return {k: sha256_array(getattr(self, k).cpu().numpy()) for k in ("x_train", "y_train", "x_test", "y_test")}


def feature_set(cnn: BaseCNN, data: Dataset, quantile: float = 0.99) -> tuple[FeatureMap, FeatureSet]:
    """The :class:`FeatureMap` fitted on ``data``'s training images (the scale of each unit: its ``quantile``, 1 for
    a unit never active) and the features of ``data``'s training and test images, named ``"<data>_cnn_features"``
    (one pass of the CNN over each image)."""
    cnn = cnn.eval()
    f_train = _fc(cnn, data.x_train)
    fmap = FeatureMap(cnn, _scale(f_train, quantile))

    def mapped(f: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.minimum(f / fmap.scale, torch.ones_like(f)) - 1.0

    fs = FeatureSet(mapped(f_train), data.y_train, mapped(_fc(cnn, data.x_test)), data.y_test,
                    f"{data.name}_cnn_features", f"BaseCNN fc features of {data.name} ({data.source})")
    return fmap, fs


#: From this power on, a feature DAM flushes subnormal numbers while it trains (``TrainConfig.flush_denormal``; what
#: that saves on a machine: ``benchmarks/subnormals.py``).
FLUSH_MIN_N = 20
#: The feature DAM's schedule at ``cpu`` size (the image DAM's is 300 epochs with a 200-epoch ramp).
FEATURE_EPOCHS = {"cpu": {"epochs": 30, "ramp_epochs": 20}}


@torch.no_grad()
def _initial_argument(cfg: TrainConfig, x: torch.Tensor) -> float:
    """Median |a_mu| = |xi.v - sum_gamma xc_gamma| of the untrained memories over the first 2000 inputs."""
    w = init_weights(cfg, "cpu", x.shape[1])  # (K, N + 10)
    N = x.shape[1]
    return float((x[:2000].cpu() @ w[:, :N].T - w[:, N:].sum(1)).abs().median())


def feature_config(profile: str, n: int, features: FeatureSet, images: Dataset, **kw: Any) -> TrainConfig:
    """The image DAM's ``profile`` preset for power ``n``, trained on ``features``, with its temperatures rescaled
    so that the untrained DAM's energy differences have the same scale on the features as on ``images``: MNIST's,
    the images the published hyperparameters were chosen for, whatever the data set of the features.

    For an untrained DAM, D ~ K n (a / T)^(n-1) (2 xc / T) grows like a^(n-1) / T^n, with a the memory's argument.
    If the features give arguments r times those of the images (median |a|, :func:`_initial_argument`), the same
    D needs T' = T r^((n-1)/n). Large n flushes subnormals (:data:`FLUSH_MIN_N`)."""
    base = TrainConfig.preset(profile, n, **FEATURE_EPOCHS.get(profile, {}))
    r = _initial_argument(base, features.x_train) / _initial_argument(base, images.x_train)
    s = r ** ((n - 1) / n)
    return dataclasses.replace(base, **{"T_i": base.T_i * s, "T_f": base.T_f * s, "dataset": features.name,
                                        "flush_denormal": n >= FLUSH_MIN_N, **kw})


class _ImageClassifier:
    """Batched prediction for an image-level classifier with ``energy_difference``."""

    loss = "dam"

    def energy_difference(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def predict_energy(self, v: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        return torch.cat([self.energy_difference(v[i : i + batch_size]) for i in range(0, len(v), batch_size)])

    def predict(self, v: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        return self.predict_energy(v, batch_size).argmax(1)

    def error_rate(self, v: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
        return 100.0 * float((self.predict(v, batch_size).cpu() != labels.cpu()).double().mean())

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.energy_difference(v))

    @property
    def device(self) -> torch.device:
        return next(self.cnn.parameters()).device  # type: ignore[attr-defined]


class CNNSoftmax(_ImageClassifier):
    """The CNN with its own head: D = the 10 logits (the attacks descend cross-entropy, ``loss = "ce"``)."""

    loss = "ce"

    def __init__(self, cnn: BaseCNN) -> None:
        self.cnn = cnn.eval()

    def energy_difference(self, v: torch.Tensor) -> torch.Tensor:
        return self.cnn((v + 1.0) / 2.0)  # (B, 10)

    def as_float64(self) -> CNNSoftmax:
        return CNNSoftmax(copy.deepcopy(self.cnn).double())


class CNNDAM(_ImageClassifier):
    """The CNN's features read by a DAM: D = eq. (1)'s energy difference of the features (B, 10)."""

    def __init__(self, fmap: FeatureMap, dam: DAM) -> None:
        self.fmap, self.dam, self.cnn = fmap, dam, fmap.cnn

    def energy_difference(self, v: torch.Tensor) -> torch.Tensor:
        return self.dam.energy_difference(self.fmap(v))

    def as_float64(self) -> CNNDAM:
        return CNNDAM(self.fmap.as_float64(), DAM(self.dam.xi.double(), self.dam.xc.double(), self.dam.n, self.dam.T))
