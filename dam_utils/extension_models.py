"""The models of chapter 6, committed or trained here: one function per part of the chapter.

Each returns a :class:`ModelSet`: image-level classifiers keyed by a label, their loss power m (the attacks'
objective, eq. (4)), what to report about each, and the records a cache is checked against (None when trained
here, since nothing trained here is saved).

* :func:`adversarial_models`: the book's DAMs n = 2, 30 (MNIST), fine-tuned with FGSM images, and their controls
  (:mod:`dam_utils.adv_train`).
* :func:`feature_models`: the base CNN of a data set with its softmax head, and DAMs on its features
  (:mod:`dam_utils.cnn_features`); committed in ``manifest["feature_dams"]["<data>_n<n>"]`` with the feature
  scales and the CNN they read.
* :func:`fashion_models`: DAMs n = 2, 30 trained on Fashion-MNIST images (``manifest["fashion_models"]``).

Train and commit what is missing with ``python -m dam_utils.book_models --n 2 30 --fashion --epochs 100``,
``python -m dam_utils.adv_train``, ``python -m dam_utils.cnn --fashion`` and
``python -m dam_utils.extension_models`` (the feature DAMs).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .adv_train import TABLE, AdvTrainConfig, committed_adv_models, fine_tune, table_key
from .artifacts import committed_record, load_history, load_model, read_manifest, save_model
from .book_models import FASHION_TABLE, obtain_models
from .cnn import CNN_TABLE, BaseCNN, CNNConfig, committed_cnn, load_cnn, train_cnn
from .cnn import table_key as cnn_key
from .cnn_features import CNNDAM, CNNSoftmax, FeatureMap, FeatureSet, feature_config, feature_set
from .data import Dataset, load_fashion_mnist, load_mnist
from .model import DAM
from .train import train
from .train_config import TrainConfig

__all__ = ["CHANCE_LEVEL", "FASHION_EPOCHS", "FEATURE_QUANTILE", "FEATURE_TABLE", "POWERS", "ModelSet",
           "adversarial_models", "epochs_at_chance", "fashion_models", "feature_models", "train_feature_dams"]

POWERS = (2, 30)
#: ``manifest["feature_dams"]["<data>_n<n>"]``: the DAMs on CNN features.
FEATURE_TABLE = "feature_dams"
#: Epochs of the Fashion-MNIST DAMs per profile (the MNIST book models: 300 at ``cpu``).
FASHION_EPOCHS = {"paper": 3000, "cpu": 100, "smoke": 2}
#: The quantile of each CNN feature on the training images that maps to +1 (``cnn_features.feature_set``).
FEATURE_QUANTILE = 0.99
#: Test error (percent) at or above which a 10-class model is "at chance" (chance itself: 90 %).
CHANCE_LEVEL = 85.0
_SMOKE_TRAIN = 5000


@dataclass
class ModelSet:
    """Classifiers keyed by label, their loss power, a row of facts each, and the cache records (None: trained
    here)."""

    models: dict[str, Any] = field(default_factory=dict)
    m: dict[str, int] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, str]] | None = field(default_factory=dict)


def epochs_at_chance(history: list[dict[str, float]], level: float = CHANCE_LEVEL) -> int:
    """How many epochs a training run spent at chance: its first epochs whose test error is at least ``level``."""
    for i, h in enumerate(history):
        if h.get("test_error", 100.0) < level:
            return i
    return len(history)


def _dam_info(e: dict[str, Any]) -> dict[str, Any]:
    h = e.get("health", {})
    return {"test error (%)": e.get("test_error"), "train error (%)": e.get("train_error"),
            "epochs": e.get("epochs"), "wall time (s)": e.get("wall_time_s"),
            "dead memories, train (%)": h.get("dead_train_%")}


def _trained_info(res: Any, data: Any) -> dict[str, Any]:
    return {"test error (%)": res.model.error_rate(data.x_test, data.y_test),
            "train error (%)": res.model.error_rate(data.x_train, data.y_train), "epochs": len(res.history),
            "wall time (s)": round(res.wall_time_s, 1), "dead memories, train (%)": res.history[-1].get("dead_train_%")}


def adversarial_models(profile: str, data: Dataset, recompute: bool = False, device: Any = "cpu",
                       root: Path | None = None) -> ModelSet:
    """``DAM n=<n>`` (the book model), ``DAM n=<n> + FGSM`` (fine-tuned on clean + FGSM images) and
    ``DAM n=<n> control`` (fine-tuned on clean images for as long) for n = 2, 30. The wall time of a fine-tuned
    model is that of its fine-tuning alone; ``epochs`` counts the book model's as well."""
    out = ModelSet(records=None if recompute or profile == "smoke" else {})
    here = out.records is None
    base = obtain_models(POWERS, profile, data, device=device, recompute=here, root=root)
    tuned = {} if here else committed_adv_models(POWERS, root)
    for n in POWERS:
        out.models[f"DAM n={n}"], out.m[f"DAM n={n}"] = base.models[n], base.loss_power[n]
        out.info[f"DAM n={n}"] = _dam_info(base.entries[n]) if not here else {
            "test error (%)": base.models[n].error_rate(data.x_test, data.y_test), "epochs": base.entries[n]["epochs"]}
        if not here:
            hint = f"python -m dam_utils.book_models --n {n}"
            out.records.update(committed_record(f"DAM n={n}", "book_models", str(n), hint, root))
        for adversarial, label in ((True, f"DAM n={n} + FGSM"), (False, f"DAM n={n} control")):
            if here:
                start = (base.models[n], base.entries[n], base.histories[n])
                res = fine_tune(n, AdvTrainConfig.preset(profile, adversarial=adversarial), data, device,
                                progress=False, start=start)
                out.models[label], out.info[label] = res.model, _trained_info(res, data)
            else:
                model, e = tuned[table_key(n, adversarial)]
                out.models[label], out.info[label] = model.to(device), _dam_info(e)
                h = load_history(read_manifest(root)[TABLE][table_key(n, adversarial)], root)
                start_epoch = int(base.entries[n]["epochs"])
                out.info[label]["wall time (s)"] = round(h[-1]["wall_time_s"] - h[start_epoch - 1]["wall_time_s"], 1)
                out.records.update(committed_record(label, TABLE, table_key(n, adversarial),
                                                    "python -m dam_utils.adv_train", root))
            out.m[label] = base.loss_power[n]
    return out


def _feature_dam(e: dict[str, Any], model: DAM, cnn: BaseCNN) -> CNNDAM:
    scale = torch.tensor(e["feature_scale"], dtype=torch.float32)
    return CNNDAM(FeatureMap(cnn, scale), model)


def train_feature_dams(profile: str, data: Dataset, cnn: BaseCNN, device: Any = "cpu", progress: bool = False,
                       save_as: dict[str, str] | None = None, root: Path | None = None, powers: Any = POWERS
                       ) -> tuple[FeatureSet, dict[int, tuple[CNNDAM, Any]]]:
    """DAMs n = 2, 30 on ``cnn``'s features of ``data`` (:func:`~dam_utils.cnn_features.feature_config`): the
    feature set and, per n, the image-level classifier and the training result. With ``save_as`` (the CNN's
    artifact record ``{"name", "sha256"}``) each is committed to ``manifest["feature_dams"]``."""
    fmap, fs = feature_set(cnn, data, FEATURE_QUANTILE)
    reference = data if data.name == "mnist" else load_mnist()  # the temperatures' reference: MNIST images
    out = {}
    for n in powers:
        cfg = feature_config(profile, n, fs, reference)
        res = train(cfg, fs, device=device, progress=progress)
        if save_as is not None:
            save_model(res, fs, root, table=FEATURE_TABLE, key=f"{data.name}_n{n}",
                       extra={"cnn": save_as, "feature_scale": fmap.scale.tolist(), "quantile": FEATURE_QUANTILE})
        out[n] = (CNNDAM(fmap, res.model), res)
    return fs, out


def feature_models(profile: str, data: Dataset, recompute: bool = False, device: Any = "cpu",
                   root: Path | None = None) -> ModelSet:
    """``CNN`` (the base CNN with its softmax head) and ``CNN + DAM n=<n>`` for n = 2, 30, on ``data``."""
    out = ModelSet(records=None if recompute or profile == "smoke" else {})
    if out.records is None:
        if profile == "smoke":  # a smoke CNN sees 2000 images; its features need not cover 60000
            data = dataclasses.replace(data, x_train=data.x_train[:_SMOKE_TRAIN], y_train=data.y_train[:_SMOKE_TRAIN])
        cnn, history, wall = train_cnn(CNNConfig.preset(profile), data, device, progress=False)
        out.info["CNN"] = {"test error (%)": history[-1]["test_error"], "epochs": len(history),
                           "wall time (s)": round(wall, 1)}
        fs, trained = train_feature_dams(profile, data, cnn, device)
        for n, (model, res) in trained.items():
            out.models[f"CNN + DAM n={n}"] = model
            out.info[f"CNN + DAM n={n}"] = _trained_info(res, fs)
            out.m[f"CNN + DAM n={n}"] = res.config.m
    else:
        name = committed_cnn("cpu", root, data.name)
        if name is None:
            raise FileNotFoundError(f"no committed base CNN for {data.name}: run `python -m dam_utils.cnn"
                                    + (" --fashion`" if data.name != "mnist" else "`"))
        cnn, ce = load_cnn(name, root)
        out.records.update(committed_record("CNN", CNN_TABLE, cnn_key("cpu", data.name),
                                            "python -m dam_utils.cnn --profile cpu [--fashion]", root))
        out.info["CNN"] = {"test error (%)": ce["test_error"], "train error (%)": ce["train_error"],
                           "epochs": ce["epochs"], "wall time (s)": ce["wall_time_s"]}
        table = read_manifest(root).get(FEATURE_TABLE, {})
        for n in POWERS:
            key, label = f"{data.name}_n{n}", f"CNN + DAM n={n}"
            if key not in table:
                raise FileNotFoundError(f"no committed feature DAM {key!r}: run `python -m dam_utils.extension_models`")
            model, e = load_model(table[key], root=root)
            if e["cnn"]["sha256"] != ce["sha256"]:
                raise FileNotFoundError(f"the feature DAM {key!r} was trained on another CNN ({e['cnn']['name']}): "
                                        "retrain it with `python -m dam_utils.extension_models`")
            out.models[label], out.info[label] = _feature_dam(e, model, cnn), _dam_info(e)
            out.m[label] = e["config"]["m"]
            hint = "python -m dam_utils.extension_models"
            out.records.update(committed_record(label, FEATURE_TABLE, key, hint, root))
    out.models = {"CNN": CNNSoftmax(cnn), **out.models}
    out.m = {"CNN": 2, **out.m}  # unused: the CNN's attacks descend its cross-entropy (loss = "ce")
    out.info = {"CNN": out.info["CNN"], **{k: v for k, v in out.info.items() if k != "CNN"}}
    return out


def fashion_models(profile: str, data: Dataset, recompute: bool = False, device: Any = "cpu",
                   root: Path | None = None) -> ModelSet:
    """``DAM n=2`` and ``DAM n=30`` trained on Fashion-MNIST images (``data``) for :data:`FASHION_EPOCHS`."""
    out = ModelSet(records=None if recompute or profile == "smoke" else {})
    table = read_manifest(root).get(FASHION_TABLE, {})
    for n in POWERS:
        label = f"DAM n={n}"
        if out.records is None:
            cfg = TrainConfig.preset(profile, n, epochs=FASHION_EPOCHS[profile], dataset=data.name)
            res = train(cfg, data, device=device, progress=False)
            out.models[label], out.info[label], out.m[label] = res.model, _trained_info(res, data), cfg.m
            out.info[label]["epochs at chance"] = epochs_at_chance(res.history)
            continue
        if str(n) not in table:
            raise FileNotFoundError(f"no committed Fashion-MNIST DAM for n={n}: run `python -m dam_utils.book_models "
                                    f"--n {n} --fashion --epochs {FASHION_EPOCHS['cpu']}`")
        model, e = load_model(table[str(n)], device, root)
        out.models[label], out.info[label], out.m[label] = model, _dam_info(e), e["config"]["m"]
        out.info[label]["epochs at chance"] = epochs_at_chance(load_history(table[str(n)], root))
        out.records.update(committed_record(label, FASHION_TABLE, str(n), "python -m dam_utils.book_models --fashion",
                                            root))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the DAMs on CNN features of chapter 6 and commit them.")
    ap.add_argument("--dataset", nargs="+", default=["mnist", "fashion_mnist"], choices=["mnist", "fashion_mnist"])
    ap.add_argument("--n", type=int, nargs="+", default=list(POWERS), choices=POWERS)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    for name in args.dataset:
        data = load_mnist() if name == "mnist" else load_fashion_mnist()
        cnn_name = committed_cnn("cpu", dataset=name)
        if cnn_name is None:
            raise SystemExit(f"no committed base CNN for {name}: run `python -m dam_utils.cnn --profile cpu"
                             + (" --fashion`" if name != "mnist" else "`"))
        cnn, ce = load_cnn(cnn_name)
        _, trained = train_feature_dams("cpu", data, cnn, args.device, progress=True,
                                        save_as={"name": cnn_name, "sha256": ce["sha256"]}, powers=args.n)
        for n, (model, res) in trained.items():
            print(f"{name} features, n={n}: test error {model.error_rate(data.x_test, data.y_test):.2f} % "
                  f"({res.wall_time_s:.0f} s)")


if __name__ == "__main__":
    main()
