"""Chapter 5's experiments (the paper's section 6 and the end of section 5): run, cache, load and recheck them.

The contestants are the book's DAMs (n = 2, 3, 20, 30) and the rectified-polynomial feed-forward networks
of :mod:`dam_utils.polynet` (n = 1, i.e. ReLU, 2, 3, 30), each trained with cross-entropy (``CE``) and with
the DAM's objective (``DAM loss``). :func:`compute_section6` runs, for all of them at once:

1. **the transfer table** of section 5 across both families: every contestant deforms the first
   ``n_images`` test images to one step behind its decision boundary (chapter 3's method,
   :func:`dam_utils.transfer.adversarial_transfer`, keyed by contestant); every contestant classifies every
   set; the guard's outputs on every set are kept;
2. **FGSM** (:mod:`dam_utils.fgsm`) at a few step sizes, every set classified by every contestant;
3. **the detector pairing** (:mod:`dam_utils.pairing`): the guard's confidence on clean training digits
   (operating threshold) and test digits (ROC), and the white-box attack on each pair.

:func:`save_section6` / :func:`load_section6` keep the result under ``artifacts/results/`` with provenance
(:mod:`dam_utils.results_cache`; loading refuses it once any model it used changed), and
:func:`recheck_section6` recomputes a random sample with the code as it is now. Run it all with
``python -m dam_utils.section6 --profile cpu``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .artifacts import entry
from .book_models import obtain_models
from .confidence import confidence, fit_beta_sm, outputs_and_predictions
from .data import Dataset, load_mnist
from .deform import DeformConfig
from .fgsm import check_epsilons, fgsm_direction, fgsm_images
from .pairing import operating_threshold, pair_attack
from .params import PROFILES, Preset, float_field, int_field
from .polynet import TABLE as POLYNET_TABLE
from .polynet import PolyNetConfig, committed_polynets, load_polynet, table_key, train_polynet
from .provenance import environment_info
from .results_cache import load_result, model_records, save_result
from .transfer import TransferResult, adversarial_transfer, recheck_transfer

__all__ = ["DAM_POWERS", "FGSM_EPS", "NET_POWERS", "Contestant", "Section6Config", "Section6Results",
           "chapter_results", "compute_section6", "contestants", "load_section6", "recheck_section6", "save_section6"]

DAM_POWERS = (2, 3, 20, 30)
NET_POWERS = (1, 2, 3, 30)
FGSM_EPS = (0.05, 0.1, 0.2, 0.3)  # on the [0, 1] pixel scale
#: A network whose committed test error is above this (percent) is reported in the chapter's table of networks
#: but takes no part in the attacks: a model at chance has no decision boundaries worth attacking.
USABLE_ERROR_MAX = 10.0
GUARD = "DAM n=30"
ACCURATE = ("net CE n=1", "DAM n=2")  # the accurate, vulnerable partners of the guard
RESULT = "ch5_section6"


@dataclass(frozen=True)
class Section6Config(Preset):
    """Sizes of chapter 5's experiments. ``reject_pct``: the share of clean *training* digits the guard
    rejects at the operating point (fixed before any comparison); ``whitebox_images``: test images attacked
    per pair; ``whitebox_steps``: the white-box attacker's budget (steps of ``eps`` = chapter 3's)."""

    n_images: int = int_field(10000, 1, 10000)
    whitebox_images: int = int_field(1000, 1, 10000)
    whitebox_steps: int = int_field(1500, 1, 10**6)
    reject_pct: float = float_field(2.0, 0.0, 50.0)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "cpu": {"whitebox_images": 500, "whitebox_steps": 1000},
        "smoke": {"n_images": 20, "whitebox_images": 10, "whitebox_steps": 30},
    }


@dataclass
class Contestant:
    """A model of the chapter: ``family`` "DAM" or "net", its power, training objective (``"dam"`` for
    every DAM), the loss power ``m`` its attacks use (eq. (4)), and its record (manifest or training)."""

    key: str
    family: str
    n: int
    objective: str
    m: int
    model: Any
    record: dict[str, Any] = field(default_factory=dict)


def net_info(c: Contestant) -> dict[str, Any]:
    """A network's row for the chapter's table, from its manifest entry (or its record when trained here)."""
    cfg = PolyNetConfig(**c.record["config"])
    return {"n": c.n, "objective": c.objective, "T": cfg.temperature, "m": cfg.m, "lr": cfg.lr,
            "epochs": cfg.epochs, "test_error": float(c.record["test_error"]),
            "train_error": c.record.get("train_error"), "dead_units_pct": c.record.get("dead_units_pct"),
            "wall_time_s": c.record.get("wall_time_s")}


def net_key(n: int, objective: str) -> str:
    return f"net {'CE' if objective == 'ce' else 'DAM loss'} n={n}"


def contestants(profile: str, data: Dataset, recompute: bool = False, device: str | torch.device = "cpu",
                dam_powers: Sequence[int] = DAM_POWERS, net_powers: Sequence[int] = NET_POWERS
                ) -> tuple[dict[str, Contestant], dict[str, dict[str, Any]]]:
    """Every model of the chapter, loaded (committed ``profile`` models) or trained here (``recompute`` or
    ``smoke``); networks with both objectives. Keys: ``"DAM n=30"``, ``"net CE n=1"``, ``"net DAM loss n=2"``.
    Returns the contestants and the networks left out of the attacks (:func:`net_info`; test error above
    :data:`USABLE_ERROR_MAX`; the rule is not applied at ``smoke``, whose models are all near chance)."""
    got = obtain_models(dam_powers, profile, data, device=device, recompute=recompute)
    out = {f"DAM n={n}": Contestant(f"DAM n={n}", "DAM", n, "dam", got.loss_power[n], got.models[n], got.entries[n])
           for n in got.models}
    committed = committed_polynets()
    for n in net_powers:
        for obj in ("ce", "dam"):
            key = net_key(n, obj)
            if recompute or profile == "smoke":
                res = train_polynet(PolyNetConfig.for_power(profile, n, obj), data, device, progress=False)
                out[key] = Contestant(key, "net", n, obj, res.config.m, res.net.to(device),
                                      {"config": res.config.to_dict(), "wall_time_s": res.wall_time_s,
                                       "test_error": res.net.error_rate(data.x_test, data.y_test)})
                continue
            name = committed.get(table_key(n, obj))
            if name is None:
                raise FileNotFoundError(f"no committed network {table_key(n, obj)}: run `python -m dam_utils.polynet "
                                        f"--n {n} --objective {obj} --profile {profile}`")
            net, e = load_polynet(name)
            out[key] = Contestant(key, "net", n, obj, int(e["config"]["m"]), net.to(device), e)
    excluded = {} if profile == "smoke" else {
        k: net_info(c) for k, c in out.items()
        if c.family == "net" and float(c.record["test_error"]) > USABLE_ERROR_MAX}
    return {k: c for k, c in out.items() if k not in excluded}, excluded


def _records(models: Mapping[str, Contestant], root: Path | None = None) -> dict[str, dict[str, str]]:
    """What a cache is checked against: each model's artifact name, SHA-256 and manifest table / key."""
    recs, committed = {}, committed_polynets(root)
    for k, c in models.items():
        if c.family == "DAM":
            recs[k] = {**model_records([c.n], root)[str(c.n)], "table": "book_models", "key": str(c.n)}
        else:
            name = committed[table_key(c.n, c.objective)]
            recs[k] = {"name": name, "sha256": entry(name, root)["sha256"], "table": POLYNET_TABLE,
                       "key": table_key(c.n, c.objective)}
    return recs


@dataclass
class Section6Results:
    """Everything chapter 5 shows. ``keys``: the contestants in table order; ``info[key]``: family, n,
    objective, m, clean test error. ``transfer``: section 5's table across both families (guard outputs kept).
    ``fgsm_predictions[e, g, t]`` (N,): model t's label of generator g's FGSM image at ``fgsm_eps[e]``;
    ``fgsm_zero[g]`` (N,): images where g's gradient is exactly zero. Guard: ``beta_guard``, ``threshold``
    (set on training digits), its clean test confidences and labels. ``whitebox[acc]``: the white-box
    attack on the pair (acc, guard): per-image arrays and a summary."""

    keys: list[str]
    info: dict[str, dict[str, Any]]
    transfer: TransferResult
    fgsm_eps: list[float]
    fgsm_predictions: np.ndarray  # (E, G, T, N) int8
    fgsm_zero: np.ndarray  # (G, N) bool
    guard: str
    beta_guard: float
    threshold: float
    guard_clean_conf: np.ndarray  # (N_test,) float64
    guard_clean_pred: np.ndarray  # (N_test,) int8
    whitebox: dict[str, dict[str, Any]]
    config: dict[str, Any]
    walls: dict[str, float]
    environment: dict[str, Any] = field(default_factory=dict)

    def fgsm_error(self, e: int) -> np.ndarray:
        """Error (percent) of model t on generator g's FGSM images at ``fgsm_eps[e]``, (G, T)."""
        return 100.0 * (self.fgsm_predictions[e] != self.transfer.labels[None, None, :]).mean(2)

    def guard_conf(self, gen: str) -> np.ndarray:
        """The guard's confidence on generator ``gen``'s adversarial set, (N,)."""
        return confidence(self.transfer.outputs[self.guard][self.keys.index(gen)], self.beta_guard)


def compute_section6(models: Mapping[str, Contestant], data: Dataset, profile: str = "cpu",
                     cfg: Section6Config | None = None, fgsm_eps: Sequence[float] = FGSM_EPS,
                     guard: str = GUARD, accurate: Sequence[str] = ACCURATE, device: str | torch.device = "cpu",
                     progress: bool = False) -> Section6Results:
    """Run the chapter's three experiments (module docstring) on ``models``."""
    cfg = cfg or Section6Config.preset(profile)
    eps = check_epsilons(fgsm_eps)
    for k in (guard, *accurate):
        if k not in models:
            raise ValueError(f"'{k}' is not among the models ({', '.join(models)})")
    keys, walls = list(models), {}
    dev = torch.device(device)
    N = min(cfg.n_images, len(data.y_test))
    t0 = time.perf_counter()
    tr = adversarial_transfer({k: c.model for k, c in models.items()}, data, N, DeformConfig.preset(profile),
                              m={k: c.m for k, c in models.items()}, keep_outputs=[guard], device=dev,
                              progress=progress)
    walls["transfer"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    x, y = data.x_test[:N].to(dev), data.y_test[:N]
    G = len(keys)
    fp = np.zeros((len(eps), G, G, N), np.int8)
    zero = np.zeros((G, N), bool)
    for g, kg in enumerate(keys):
        c = models[kg]
        d = fgsm_direction(c.model, x, y, c.m)
        zero[g] = d.zero_gradient.numpy()
        for e, ep in enumerate(eps):
            adv = fgsm_images(x, d, ep).to(dev)
            for t, kt in enumerate(keys):
                fp[e, g, t] = models[kt].model.predict(adv).cpu().numpy()
        if progress:
            print(f"fgsm: {kg} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    walls["fgsm"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gm = models[guard]
    y_test, p_test = outputs_and_predictions(gm.model, data.x_test.to(dev))  # one pass: beta_sm and the ROC
    beta = fit_beta_sm(y_test, data.y_test.numpy(), predictions=p_test, clip=True)  # as Fig. 7 fits it
    y_train, _ = outputs_and_predictions(gm.model, data.x_train.to(dev))
    threshold = operating_threshold(confidence(y_train, beta), cfg.reject_pct)
    walls["guard"] = time.perf_counter() - t0

    whitebox = {}
    W = min(cfg.whitebox_images, N)
    for k in accurate:
        t0 = time.perf_counter()
        r = pair_attack(models[k].model, gm.model, x[:W], m_acc=models[k].m, m_guard=gm.m, beta_guard=beta,
                        threshold=threshold, eps=DeformConfig.preset(profile).eps, max_steps=cfg.whitebox_steps)
        whitebox[k] = {"summary": r.summary(), "success": r.success.numpy(), "steps": r.steps.numpy(),
                       "distance": r.distance.numpy(), "target": r.target.numpy(), "acc_pred": r.acc_pred.numpy(),
                       "guard_pred": r.guard_pred.numpy(), "guard_conf": r.guard_conf.numpy(),
                       "samples": r.images[:10].float().numpy()}
        walls[f"whitebox {k}"] = time.perf_counter() - t0
        if progress:
            print(f"white-box on ({k}, {guard}): {r.summary()}", flush=True)

    info = {k: {**(net_info(c) if c.family == "net" else {}), "family": c.family, "n": c.n,
                "objective": c.objective, "m": c.m, "test_error": tr.clean_error_full[k]} for k, c in models.items()}
    config = {"profile": profile, "section6": cfg.to_dict(), "fgsm_eps": eps, "guard": guard,
              "accurate": list(accurate), "deform": tr.config["deform"], "n_images": N}
    return Section6Results(keys, info, tr, eps, fp, zero, guard, beta, threshold, confidence(y_test, beta),
                           p_test.astype(np.int8), whitebox, config, walls, environment_info(dev))


# ---------------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------------

_TRANSFER_ARRAYS = ("indices", "labels", "predictions", "clean_predictions", "top", "second", "crossed",
                    "sample_positions", "samples")
_WHITEBOX_ARRAYS = ("success", "steps", "distance", "target", "acc_pred", "guard_pred", "guard_conf", "samples")


def save_section6(res: Section6Results, models: Mapping[str, Contestant], device: Any = "cpu",
                  root: Path | None = None) -> dict[str, Any]:
    """Write ``results/ch5_section6.json`` + ``.npz`` atomically, with the artifact name and SHA-256 of
    every model used (:func:`dam_utils.results_cache.check_fresh` refuses the cache once one changes)."""
    tr = res.transfer
    table = tr.table()
    payload = {
        "keys": res.keys, "info": res.info, "fgsm_eps": res.fgsm_eps, "guard": res.guard,
        "beta_guard": res.beta_guard, "threshold": res.threshold, "walls": res.walls,
        "transfer_table": {g: {t: table[i, j] for j, t in enumerate(res.keys)} for i, g in enumerate(res.keys)},
        "transfer_summaries": tr.summaries, "clean_error_full": tr.clean_error_full,
        "whitebox_summary": {k: w["summary"] for k, w in res.whitebox.items()},
    }
    arrays = {f"transfer_{a}": getattr(tr, a) for a in _TRANSFER_ARRAYS}
    arrays["transfer_samples"] = tr.samples.astype(np.float16)
    arrays["guard_outputs"] = tr.outputs[res.guard].astype(np.float32)
    arrays.update(fgsm_predictions=res.fgsm_predictions, fgsm_zero=res.fgsm_zero,
                  guard_clean_conf=res.guard_clean_conf, guard_clean_pred=res.guard_clean_pred)
    for i, w in enumerate(res.whitebox.values()):
        arrays.update({f"whitebox{i}_{a}": np.asarray(w[a]) for a in _WHITEBOX_ARRAYS})
    config = {**res.config, "transfer": tr.config, "models": _records(models, root)}
    return save_result(RESULT, "result-ch5", payload, arrays, config, sum(res.walls.values()), device, root)


def load_section6(root: Path | None = None, check_models: bool = True) -> Section6Results:
    """The cached chapter-5 results (SHA-256 verified; refused when a model it used is no longer committed)."""
    doc, a = load_result(RESULT, root, check_models)
    assert a is not None
    keys = list(doc["keys"])
    tcfg = doc["config"]["transfer"]
    tr = TransferResult(keys, *(a[f"transfer_{x}"] for x in _TRANSFER_ARRAYS[:8]),
                        a["transfer_samples"].astype(np.float32), dict(doc["clean_error_full"]),
                        dict(doc["transfer_summaries"]), tcfg, float(doc["walls"]["transfer"]), doc["environment"],
                        {doc["guard"]: a["guard_outputs"].astype(np.float64)})
    whitebox = {k: {"summary": doc["whitebox_summary"][k], **{x: a[f"whitebox{i}_{x}"] for x in _WHITEBOX_ARRAYS}}
                for i, k in enumerate(doc["config"]["accurate"])}
    return Section6Results(keys, doc["info"], tr, list(doc["fgsm_eps"]), a["fgsm_predictions"], a["fgsm_zero"],
                           doc["guard"], float(doc["beta_guard"]), float(doc["threshold"]), a["guard_clean_conf"],
                           a["guard_clean_pred"], whitebox, doc["config"], dict(doc["walls"]), doc["environment"])


def recheck_section6(res: Section6Results, models: Mapping[str, Contestant], data: Dataset, n_sample: int = 30,
                     n_whitebox: int = 4, seed: int = 0) -> dict[str, Any]:
    """Recompute a random sample of every cached table with the code as it is now and count disagreements:
    the transfer labels (and the guard's outputs on those sets), the FGSM labels, the guard's clean
    confidences and threshold, and the white-box attack on ``n_whitebox`` images per pair."""
    rng = np.random.default_rng(seed)
    N = res.transfer.n_images
    pos = np.sort(rng.choice(N, size=min(n_sample, N), replace=False))
    out: dict[str, Any] = {"transfer": recheck_transfer(res.transfer, {k: c.model for k, c in models.items()}, data,
                                                        n_sample=n_sample, seed=seed, keep_outputs=[res.guard])}
    x, y = data.x_test[torch.as_tensor(pos)], data.y_test[torch.as_tensor(pos)]
    bad = 0
    for g, kg in enumerate(res.keys):
        c = models[kg]
        d = fgsm_direction(c.model, x, y, c.m)
        for e, ep in enumerate(res.fgsm_eps):
            adv = fgsm_images(x, d, ep)
            for t, kt in enumerate(res.keys):
                bad += int((models[kt].model.predict(adv).cpu().numpy() != res.fgsm_predictions[e, g, t, pos]).sum())
    out["fgsm"] = {"compared": len(pos) * len(res.keys) ** 2 * len(res.fgsm_eps), "disagree": bad}
    gm = models[res.guard]
    yg, pg = outputs_and_predictions(gm.model, x)
    out["guard_clean"] = {"max_abs_conf_diff": float(np.abs(confidence(yg, res.beta_guard)
                                                            - res.guard_clean_conf[pos]).max()),
                          "label_disagree": int((pg != res.guard_clean_pred[pos]).sum())}
    y_train, _ = outputs_and_predictions(gm.model, data.x_train)
    thr = operating_threshold(confidence(y_train, res.beta_guard), res.config["section6"]["reject_pct"])
    out["threshold_abs_diff"] = abs(thr - res.threshold)
    wb = {}
    W = len(next(iter(res.whitebox.values()))["success"])
    wpos = np.sort(rng.choice(W, size=min(n_whitebox, W), replace=False))
    for k, w in res.whitebox.items():
        r = pair_attack(models[k].model, gm.model, data.x_test[torch.as_tensor(wpos)], m_acc=models[k].m,
                        m_guard=gm.m, beta_guard=res.beta_guard, threshold=res.threshold,
                        eps=float(res.config["deform"]["eps"]), max_steps=int(res.config["section6"]["whitebox_steps"]))
        wb[k] = {"positions": wpos.tolist(),
                 "success_disagree": int((r.success.numpy() != w["success"][wpos]).sum()),
                 "steps_disagree": int((r.steps.numpy() != w["steps"][wpos]).sum()),
                 "max_abs_distance_diff": float(np.abs(r.distance.numpy() - w["distance"][wpos]).max())}
    out["whitebox"] = wb
    return out


def chapter_results(profile: str, recompute: bool, data: Dataset, n_images: int | None = None,
                    device: str | torch.device = "cpu") -> tuple[Section6Results, str]:
    """What chapter 5 shows and where it comes from: the cache (default; refused when stale), or everything
    trained and computed here (``recompute`` or profile ``smoke``; nothing is written)."""
    if not recompute and profile != "smoke":
        if n_images is not None:
            raise ValueError("n_images applies when recomputing only (recompute=True or profile='smoke')")
        return load_section6(), "loaded from artifacts/results/"
    models, excluded = contestants(profile, data, recompute=True, device=device)
    cfg = Section6Config.preset(profile, **({"n_images": n_images} if n_images else {}))
    res = compute_section6(models, data, profile, cfg, device=device)
    res.config["excluded"] = excluded
    return res, "computed in this notebook"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Compute and cache chapter 5's results (section 6 of the paper).")
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    data = load_mnist()
    models, excluded = contestants(args.profile, data, device=args.device)
    res = compute_section6(models, data, args.profile, device=args.device, progress=True)
    res.config["excluded"] = excluded
    save_section6(res, models, args.device)
    print({k: round(v) for k, v in res.walls.items()})


if __name__ == "__main__":
    main()
