"""Chapter 6's experiments (the paper's two proposed extensions, and Fashion-MNIST): run, cache, load, recheck.

The chapter has four parts, each a set of image-level classifiers (:mod:`dam_utils.extension_models`) put
through the same two attacks:

* ``adversarial``: the book's DAMs n = 2, 30, their FGSM-trained versions and their controls (MNIST);
* ``features_mnist`` / ``features_fashion``: the base CNN with its softmax head and DAMs on its features;
* ``fashion``: DAMs n = 2, 30 trained on Fashion-MNIST images.

For each part, :func:`compute_part` runs

1. **the transfer table** (chapter 3's method, :func:`dam_utils.transfer.adversarial_transfer`): every model
   deforms the first ``n_images`` test images along ``-grad C^second`` to one step behind its decision boundary;
   every model classifies every set. The deformation also gives each image's L2 distance to the model's own
   boundary (``distances``): the white-box measure of robustness;
2. **FGSM** (:mod:`dam_utils.fgsm`) at chapter 5's step sizes, each model on its own FGSM images (for the
   FGSM-trained models this is the attack they were trained against: a drop here and not in the boundary
   distance would mean the training hid the gradient rather than moved the boundary).

:func:`save_part` / :func:`load_part` keep each part under ``artifacts/results/ch6_<part>`` with the records of
the models used (refused once one changes), and :func:`recheck_part` recomputes a random sample. Run it all with
``python -m dam_utils.extensions --profile cpu``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .data import Dataset, load_fashion_mnist, load_mnist
from .extension_models import ModelSet, adversarial_models, fashion_models, feature_models
from .fgsm import fgsm_direction, fgsm_images
from .params import PROFILES, Preset, int_field
from .results_cache import load_result, save_result, transfer_from, transfer_payload
from .section6 import FGSM_EPS
from .transfer import TransferResult, adversarial_transfer, recheck_transfer

__all__ = ["PARTS", "ExtensionsConfig", "PartResult", "chapter_results", "compute_part", "load_part", "part_data",
           "part_models", "recheck_part", "save_part"]

PARTS = ("adversarial", "features_mnist", "features_fashion", "fashion")
_MODELS = {"adversarial": adversarial_models, "features_mnist": feature_models, "features_fashion": feature_models,
           "fashion": fashion_models}


def result_name(part: str) -> str:
    return f"ch6_{part}"


@dataclass(frozen=True)
class ExtensionsConfig(Preset):
    """How many test images every model attacks (the first ones of the part's test set): ``n_images`` in the
    adversarial-training part, ``n_images_other`` in the parts on CNN features and on Fashion-MNIST, whose n = 30
    models take several times longer to deform (most of their memories are weakly active or dead)."""

    n_images: int = int_field(10000, 1, 10000)
    n_images_other: int = int_field(10000, 1, 10000)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "cpu": {"n_images": 2000, "n_images_other": 500},
        "smoke": {"n_images": 20, "n_images_other": 20},
    }

    def for_part(self, part: str) -> int:
        return self.n_images if part == "adversarial" else self.n_images_other


@dataclass
class PartResult:
    """One part: the transfer table (with boundary distances), each model's facts, and FGSM: ``fgsm_predictions``
    (M, E, N) int8, model m's label of its own FGSM image of test image i at step ``fgsm_eps[e]``; ``fgsm_zero``
    (M, N) bool, images whose gradient was exactly zero (they cannot move; counted, never hidden); ``clean_full``
    (M, 10000) int8, every model's label of every clean test image, and ``labels_full`` (10000,) the true labels
    (for paired tests between models)."""

    part: str
    transfer: TransferResult
    info: dict[str, dict[str, Any]]
    fgsm_eps: list[float]
    fgsm_predictions: np.ndarray
    fgsm_zero: np.ndarray
    clean_full: np.ndarray
    labels_full: np.ndarray
    config: dict[str, Any]
    environment: dict[str, Any]

    @property
    def keys(self) -> list[str]:
        return [str(k) for k in self.transfer.n_values]

    def fgsm_error(self, key: str) -> list[float]:
        """Percent of the ``n_images`` that ``key`` misclassifies after its own FGSM step, per step size."""
        i = self.keys.index(key)
        return [100.0 * float((self.fgsm_predictions[i, e] != self.transfer.labels).mean())
                for e in range(len(self.fgsm_eps))]


def part_data(part: str) -> Dataset:
    """MNIST, or Fashion-MNIST for the parts on it."""
    return load_fashion_mnist() if part in ("features_fashion", "fashion") else load_mnist()


def part_models(part: str, profile: str, data: Dataset, recompute: bool = False, device: Any = "cpu") -> ModelSet:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return _MODELS[part](profile, data, recompute, device)


def _fgsm(models: dict[str, Any], m: dict[str, int], x: torch.Tensor, y: torch.Tensor,
          eps: list[float]) -> tuple[np.ndarray, np.ndarray]:
    preds = np.zeros((len(models), len(eps), len(x)), np.int8)
    zero = np.zeros((len(models), len(x)), bool)
    for i, (k, model) in enumerate(models.items()):
        d = fgsm_direction(model, x, y, m[k])
        zero[i] = d.zero_gradient.numpy()
        for e, step in enumerate(eps):
            preds[i, e] = model.predict(fgsm_images(x, d, step).to(x.device)).cpu().numpy()
    return preds, zero


def compute_part(part: str, ms: ModelSet, data: Dataset, profile: str = "cpu", n_images: int | None = None,
                 device: Any = "cpu", progress: bool = False) -> PartResult:
    """Run the transfer table and FGSM of ``part`` for the models ``ms`` on the first ``n_images`` test images
    (default: the profile's :class:`ExtensionsConfig` for that part)."""
    over = {} if n_images is None else {"n_images": n_images, "n_images_other": n_images}
    cfg = ExtensionsConfig.preset(profile, **over)
    t0 = time.perf_counter()
    tr = adversarial_transfer(ms.models, data, cfg.for_part(part), m=ms.m, device=device, progress=progress)
    t_fgsm = time.perf_counter()
    N = tr.n_images
    preds, zero = _fgsm(ms.models, ms.m, data.x_test[:N].to(device), data.y_test[:N], list(FGSM_EPS))
    walls = {"transfer": t_fgsm - t0, "fgsm": time.perf_counter() - t_fgsm}
    clean = np.stack([model.predict(data.x_test.to(device)).cpu().numpy().astype(np.int8)
                      for model in ms.models.values()])
    config = {"profile": profile, "part": part, "extensions": cfg.to_dict(), "data": data.name, "walls": walls}
    labels = data.y_test.cpu().numpy().astype(np.int8)
    return PartResult(part, tr, ms.info, list(FGSM_EPS), preds, zero, clean, labels, config, tr.environment)


def save_part(res: PartResult, records: dict[str, dict[str, str]], device: Any = "cpu",
              root: Path | None = None) -> dict[str, Any]:
    """Write ``results/ch6_<part>.json`` + ``.npz`` with the records of the models used."""
    payload, arrays = transfer_payload(res.transfer)
    payload.update(info=res.info, fgsm_eps=res.fgsm_eps, part=res.part, transfer_config=res.transfer.config,
                   fgsm_error={k: res.fgsm_error(k) for k in res.keys})
    arrays.update(fgsm_predictions=res.fgsm_predictions, fgsm_zero=res.fgsm_zero, clean_full=res.clean_full,
                  labels_full=res.labels_full)
    config = {**res.config, "models": dict(records)}
    wall = sum(res.config["walls"].values())
    return save_result(result_name(res.part), f"result-ch6-{res.part}", payload, arrays, config, wall, device, root)


def load_part(part: str, root: Path | None = None, check_models: bool = True) -> PartResult:
    """A cached part (SHA-256 verified; refused when a model it used is no longer the committed one)."""
    doc, a = load_result(result_name(part), root, check_models)
    assert a is not None
    tr = transfer_from({**doc, "config": doc["transfer_config"]}, a)
    return PartResult(part, tr, doc["info"], list(doc["fgsm_eps"]), a["fgsm_predictions"], a["fgsm_zero"],
                      a["clean_full"], a["labels_full"], doc["config"], doc["environment"])


def recheck_part(res: PartResult, ms: ModelSet, data: Dataset, n_sample: int = 20, seed: int = 0,
                 device: Any = "cpu") -> dict[str, Any]:
    """Recompute ``n_sample`` random images of a cached part with the code as it is now: the transfer cells
    (:func:`dam_utils.transfer.recheck_transfer`) and every model's FGSM labels. Returns both comparisons."""
    out = recheck_transfer(res.transfer, ms.models, data, n_sample, seed, device)
    pos = np.asarray([int(np.flatnonzero(res.transfer.indices == i)[0]) for i in out["indices"]])
    x = data.x_test[torch.as_tensor(res.transfer.indices[pos])].to(device)
    preds, zero = _fgsm(ms.models, ms.m, x, data.y_test[torch.as_tensor(res.transfer.indices[pos])], res.fgsm_eps)
    out["fgsm_disagree"] = int((preds != res.fgsm_predictions[:, :, pos]).sum())
    out["fgsm_zero_disagree"] = int((zero != res.fgsm_zero[:, pos]).sum())
    out["fgsm_compared"] = int(preds.size)
    return out


def chapter_results(profile: str, recompute: bool, n_images: int | None = None, device: Any = "cpu"
                    ) -> tuple[dict[str, PartResult], dict[str, Dataset], str]:
    """Every part: loaded from the cache (``cpu``, not ``recompute``), or computed here (nothing saved). Returns
    the parts, their data sets and a sentence saying where the results come from."""
    data = {"mnist": load_mnist(), "fashion_mnist": load_fashion_mnist()}
    sets = {p: data["fashion_mnist" if p in ("features_fashion", "fashion") else "mnist"] for p in PARTS}
    if recompute or profile == "smoke":
        parts = {p: compute_part(p, part_models(p, profile, sets[p], True, device), sets[p], profile, n_images, device)
                 for p in PARTS}
        return parts, sets, f"computed here ({profile} profile, nothing saved)"
    if profile != "cpu":
        raise FileNotFoundError(f"chapter 6 has cached results for the 'cpu' profile only; run it with "
                                f"profile={profile!r}, recompute=True")
    return {p: load_part(p) for p in PARTS}, sets, "loaded from artifacts/results/ch6_*"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run chapter 6's experiments and cache them under artifacts/results/.")
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--n-images", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    for part in args.parts:
        data = part_data(part)
        ms = part_models(part, args.profile, data, False, args.device)
        res = compute_part(part, ms, data, args.profile, args.n_images, args.device, progress=True)
        e = save_part(res, ms.records or {}, args.device)
        print(f"{part}: {e['path']} ({sum(res.config['walls'].values()):.0f} s)", flush=True)


if __name__ == "__main__":
    main()
