"""Chapter 7: an independent robustness audit of the book's models, run, cached, loaded and rechecked.

Krotov & Hopfield's evidence of robustness is transfer from other models and their own gradient procedure.
Both can be fooled by gradient masking (Athalye, Carlini & Wagner 2018; Carlini et al. 2019). The audit attacks
the book's DAMs (n = 2, 3, 20, 30) and chapter 5's ReLU network (the baseline) with library code only
(:mod:`dam_utils.audit_attacks`) and records, per model:

1. **curves**: robust accuracy against eps, L-inf and L2, for FGSM and PGD (foolbox) on ``n_cheap`` images and
   for AutoAttack's standard sequence (APGD-CE, APGD-T, FAB-T, Square) on ``n_images``;
2. **minimal L2 distances**: DeepFool (foolbox) and FAB (AutoAttack) on ``n_min`` images, HopSkipJump
   (decision-based, foolbox) on ``n_hsj``;
3. **the checklist** at one eps per norm (:data:`CHECK_EPS`) on the first ``n_check`` images: eps without
   bound, APGD with more iterations and restarts, Square alone, transfer from every other model, the attack on
   ``tanh(D)`` instead of ``D``, and the share of images whose loss gradient is exactly zero.

:mod:`dam_utils.audit_tables` turns the result into the chapter's tables and verdicts. Run everything with
``python -m dam_utils.audit``; one cell with ``python -m dam_utils.audit --n 30 --attack apgd-ce --eps 0.1``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_write
from .audit_attacks import BOUNDED, MINIMAL, NORMS, STANDARD, AttackBudget, autoattack_standard, run_attack
from .audit_model import AttackView, to_images
from .data import Dataset, load_mnist
from .data_sources import sha256_array
from .params import PROFILES, Preset, check_choice, check_float, int_field
from .provenance import environment_info
from .results_cache import load_result, save_result
from .section6 import Contestant, _records, contestants

try:  # tqdm is optional: the GPU machine has torch, numpy and scipy only
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

__all__ = ["AUDITED", "CHECK_EPS", "EPS", "RESULT", "UNBOUNDED_EPS", "AuditConfig", "AuditResults",
           "audited_models", "chapter_results", "compute_audit", "load_audit", "recheck_audit", "save_audit",
           "zero_gradient_share"]

AUDITED = ("DAM n=2", "DAM n=3", "DAM n=20", "DAM n=30", "net CE n=1")
BASELINE = "net CE n=1"
#: eps grids in [0, 1] pixel units (L2: the whole image, 784 pixels).
EPS = {"Linf": (0.05, 0.1, 0.15, 0.2, 0.3), "L2": (0.5, 1.0, 1.5, 2.0, 3.0)}
#: The eps of the checklist, fixed before any run: the usual MNIST L-inf budget below 0.3, and an L2 radius near
#: the median boundary distance of chapter 3 (about 1 in these units for n = 2).
CHECK_EPS = {"Linf": 0.1, "L2": 1.0}
#: "Unbounded": the whole box [0, 1]^784 (L-inf 1, L2 sqrt(784) = 28).
UNBOUNDED_EPS = {"Linf": 1.0, "L2": 28.0}
RESULT = "ch7_audit"


@dataclass(frozen=True)
class AuditConfig(Preset):
    """How many images each part of the audit attacks, and the attacks' budgets (:class:`AttackBudget`).

    ``curve_attacks``: how much of AutoAttack's standard sequence draws the curves (2: its gradient attacks,
    APGD-CE and APGD-T; 4: all of it). On the CPU the curves use 2 on 1000 images (FAB-T's L-inf projections and
    Square's queries dominate the cost: compare the walls ``autoattack`` and ``autoattack full`` the cache records)
    and the full sequence runs at the checklist's eps on ``n_check`` images, where the gain of FAB-T and Square
    over APGD is itself a check."""

    @property
    def curve_sequence(self) -> tuple[str, ...]:
        return STANDARD[: self.curve_attacks]

    n_images: int = int_field(1000, 1, 10000)
    n_cheap: int = int_field(10000, 1, 10000)
    n_check: int = int_field(100, 1, 10000)
    n_min: int = int_field(1000, 1, 10000)
    n_hsj: int = int_field(50, 1, 10000)
    curve_attacks: int = int_field(2, 1, len(STANDARD))
    pgd_steps: int = int_field(40, 1, 10**5)
    apgd_iter: int = int_field(100, 1, 10**5)
    long_iter: int = int_field(300, 1, 10**5)
    long_restarts: int = int_field(3, 1, 100)
    fab_iter: int = int_field(100, 1, 10**5)
    square_queries: int = int_field(5000, 1, 10**6)
    deepfool_steps: int = int_field(50, 1, 10**5)
    hsj_steps: int = int_field(40, 1, 10**4)
    batch_size: int = int_field(1000, 1, 10**5)
    seed: int = int_field(0, 0, 2**32 - 1)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"n_images": 10000, "n_check": 1000, "n_min": 10000, "n_hsj": 1000, "curve_attacks": 4},
        "cpu": {"n_min": 500},
        "smoke": {"n_images": 6, "n_cheap": 12, "n_check": 6, "n_min": 6, "n_hsj": 2, "pgd_steps": 3,
                  "apgd_iter": 3, "long_iter": 4, "long_restarts": 1, "fab_iter": 3, "square_queries": 5,
                  "deepfool_steps": 3, "hsj_steps": 1, "batch_size": 6},
    }

    def budget(self) -> AttackBudget:
        return AttackBudget(self.pgd_steps, self.apgd_iter, self.long_iter, self.long_restarts, self.fab_iter,
                            self.square_queries, self.deepfool_steps, self.hsj_steps, self.batch_size)


def zero_gradient_share(view: AttackView, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Percent of images whose cross-entropy loss on ``view``'s outputs has an exactly zero input gradient (the
    symptom AutoAttack's ``check_zero_gradients`` warns about)."""
    zero = 0
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(view(xb), y[i : i + batch_size], reduction="sum"), xb)
        zero += int((g.reshape(len(xb), -1).abs().sum(1) == 0).sum())
    return 100.0 * zero / len(x)


@dataclass
class AuditResults:
    """Everything chapter 7 shows; arrays are indexed ``[model, norm, eps, image]`` in the orders of ``keys``,
    :data:`NORMS` and :data:`EPS`. ``fooled[attack]`` (M, 2, E, N) bool for ``fgsm``/``pgd`` (``n_cheap`` images);
    ``broken_by`` (M, 2, E, N) int8 for AutoAttack (``n_images``; -1 clean error, i: first :data:`STANDARD`
    attack that fooled it, 4: robust). ``distance[attack]`` (M, N) minimal L2 distances (inf: not found).
    ``check``: per model and norm, the checklist's per-image outcomes and numbers. ``walls[key]``: seconds per
    attack and model; ``warnings[key][norm]``: every message the libraries emitted, with counts."""

    keys: list[str]
    info: dict[str, dict[str, Any]]
    fooled: dict[str, np.ndarray]
    broken_by: np.ndarray
    distance: dict[str, np.ndarray]
    check: dict[str, dict[str, dict[str, Any]]]
    warnings: dict[str, dict[str, dict[str, int]]]
    walls: dict[str, dict[str, float]]
    config: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)

    def robust(self, attack: str) -> np.ndarray:
        """Robust accuracy (percent), (M, 2, E): ``fgsm``, ``pgd`` or ``autoattack``."""
        if attack == "autoattack":
            return 100.0 * (self.broken_by == self.config["audit"]["curve_attacks"]).mean(-1)
        return 100.0 * (~self.fooled[attack]).mean(-1)


def audited_models(profile: str, data: Dataset, recompute: bool = False, device: str | torch.device = "cpu"
                   ) -> dict[str, Contestant]:
    """The DAMs and the ReLU baseline of chapter 5 (:func:`dam_utils.section6.contestants`), nothing else."""
    models, _ = contestants(profile, data, recompute=recompute, device=device, net_powers=(1,))
    return {k: models[k] for k in AUDITED}


def _views(models: Mapping[str, Contestant], output: str = "logits") -> dict[str, AttackView]:
    return {k: AttackView(c.model, output) for k, c in models.items()}


def _add(into: dict[str, int], messages: Mapping[str, int]) -> None:
    for m, c in messages.items():
        into[m] = into.get(m, 0) + c


def compute_audit(models: Mapping[str, Contestant], data: Dataset, cfg: AuditConfig,
                  device: str | torch.device = "cpu", progress: bool = False,
                  parts_dir: Path | None = None) -> AuditResults:
    """Run the audit (module docstring) on ``models``; ``progress`` shows a bar over the models.

    ``parts_dir``: each model's part is written there (atomically) when done and reused by a later call with the
    same config and the same weights, so a long run that stops resumes with the next model."""
    keys, dev = list(models), torch.device(device)
    views, tanh_views = _views(models), _views(models, "tanh")
    x_all, y_all = to_images(data.x_test).to(dev), data.y_test.to(dev)
    config = {"audit": cfg.to_dict(), "eps": {nm: list(EPS[nm]) for nm in NORMS}, "check_eps": CHECK_EPS,
              "unbounded_eps": UNBOUNDED_EPS, "keys": keys}
    parts = []
    for k in tqdm(keys, desc="audit: models", disable=not progress) if tqdm else keys:
        stamp = {"config": config, "model": _weights_digest(models[k].model)}
        path = parts_dir / f"{k.replace(' ', '_').replace('=', '')}.pt" if parts_dir else None
        part = torch.load(path, weights_only=False) if path and path.exists() else None
        if part is None or part["stamp"] != stamp:
            part = {"stamp": stamp, **_audit_one(k, keys, views, tanh_views, x_all, y_all, cfg)}
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(path) as fh:
                    torch.save(part, fh)
        parts.append(part)
    info = {k: {"family": c.family, "n": c.n, "objective": c.objective,
                "test_error": float(c.model.error_rate(data.x_test.to(dev), data.y_test))} for k, c in models.items()}
    return AuditResults(
        keys, info, {a: np.stack([p["fooled"][a] for p in parts]) for a in ("fgsm", "pgd")},
        np.stack([p["broken_by"] for p in parts]),
        {a: np.stack([p["distance"][a] for p in parts]) for a in MINIMAL},
        {k: p["check"] for k, p in zip(keys, parts, strict=True)},
        {k: p["warnings"] for k, p in zip(keys, parts, strict=True)},
        {k: p["walls"] for k, p in zip(keys, parts, strict=True)}, config, environment_info(dev))


def _weights_digest(model: Any) -> str:
    """The SHA-256 of every weight tensor (:func:`~dam_utils.data_sources.sha256_array`), for the parts' stamps."""
    tensors = model.state_dict().values() if isinstance(model, torch.nn.Module) else (model.xi, model.xc)
    return " ".join(sha256_array(t.detach().cpu().numpy()) for t in tensors)


def _audit_one(k: str, keys: Sequence[str], views: Mapping[str, AttackView], tanh_views: Mapping[str, AttackView],
               x_all: torch.Tensor, y_all: torch.Tensor, cfg: AuditConfig) -> dict[str, Any]:
    """One model's curves, checklist and minimal distances."""
    budget, v = cfg.budget(), views[k]
    E = len(EPS["Linf"])
    Nc, Ni, Nk = min(cfg.n_cheap, len(x_all)), min(cfg.n_images, len(x_all)), min(cfg.n_check, cfg.n_images)
    fooled = {"fgsm": np.zeros((2, E, Nc), bool), "pgd": np.zeros((2, E, Ni), bool)}
    broken = np.zeros((2, E, Ni), np.int8)
    warns: dict[str, dict[str, int]] = {nm: {} for nm in NORMS}
    walls: Counter = Counter()
    check = {}
    for nn_, norm in enumerate(NORMS):
        w = warns[norm]
        for e, eps in enumerate(EPS[norm]):
            for a, n_img in (("fgsm", Nc), ("pgd", Ni)):
                r = run_attack(a, v, x_all[:n_img], y_all[:n_img], norm, eps, budget, cfg.seed)
                fooled[a][nn_, e] = r.fooled.numpy()
                walls[a] += r.wall_s
                _add(w, r.warnings)
            r, br = autoattack_standard(v, x_all[:Ni], y_all[:Ni], norm, eps, budget, cfg.seed, cfg.curve_sequence)
            broken[nn_, e] = br.numpy()
            walls["autoattack"] += r.wall_s
            _add(w, r.warnings)
        check[norm] = _checklist(k, keys, views, tanh_views, x_all[:Nk], y_all[:Nk], norm, budget, cfg, w, walls)
    distance = {}
    for a, n_img in (("deepfool", cfg.n_min), ("fab", cfg.n_min), ("hsj", cfg.n_hsj)):
        n_img = min(n_img, len(x_all))
        r = run_attack(a, v, x_all[:n_img], y_all[:n_img], "L2", None, budget, cfg.seed)
        distance[a] = r.distance.numpy()
        walls[a] += r.wall_s
        _add(warns["L2"], r.warnings)
    return {"fooled": fooled, "broken_by": broken, "distance": distance, "check": check, "warnings": warns,
            "walls": {a: round(s, 2) for a, s in walls.items()}}


def _checklist(k: str, keys: Sequence[str], views: Mapping[str, AttackView], tanh_views: Mapping[str, AttackView],
               x: torch.Tensor, y: torch.Tensor, norm: str, budget: AttackBudget, cfg: AuditConfig,
               warns: dict[str, int], walls: Counter) -> dict[str, Any]:
    """The gradient-masking checklist for model ``k`` at :data:`CHECK_EPS` on images ``x`` (per-image outcomes)."""
    eps, v, out = CHECK_EPS[norm], views[k], {}

    def run(name: str, view: AttackView, e: float, label: str) -> np.ndarray:
        r = run_attack(name, view, x, y, norm, e, budget, cfg.seed)
        walls[label] += r.wall_s
        _add(warns, r.warnings)
        return r.fooled.numpy()

    r, br = autoattack_standard(v, x, y, norm, eps, budget, cfg.seed)
    walls["autoattack full"] += r.wall_s
    _add(warns, r.warnings)
    out["aa_broken_by"] = br.numpy()
    r, _ = autoattack_standard(v, x, y, norm, UNBOUNDED_EPS[norm], budget, cfg.seed)
    walls["unbounded"] += r.wall_s
    _add(warns, r.warnings)
    out["unbounded_fooled"] = r.fooled.numpy()
    out["long_fooled"] = run("apgd-ce-long", v, eps, "apgd-long") | run("apgd-dlr-long", v, eps, "apgd-long")
    out["square_fooled"] = run("square", v, eps, "square alone")
    out["apgd_ce_fooled"] = run("apgd-ce", v, eps, "apgd-ce alone")
    out["apgd_ce_tanh_fooled"] = run("apgd-ce", tanh_views[k], eps, "apgd-ce on tanh")
    out["pgd_tanh_fooled"] = run("pgd", tanh_views[k], eps, "pgd on tanh")
    out["zero_grad_logits_pct"] = zero_gradient_share(v, x, y)
    out["zero_grad_tanh_pct"] = zero_gradient_share(tanh_views[k], x, y)
    # transfer: PGD images made on every other model, labelled by this one
    transfer = {}
    for src in keys:
        if src == k:
            continue
        t0 = time.perf_counter()
        adv = run_attack("pgd", views[src], x, y, norm, eps, budget, cfg.seed).adv.to(x.device)
        with torch.no_grad():
            transfer[src] = (v(adv).argmax(1) != y).cpu().numpy()
        walls["transfer"] += time.perf_counter() - t0
    out["transfer_fooled"] = transfer
    return out


# ---------------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------------

_CHECK_ARRAYS = ("aa_broken_by", "unbounded_fooled", "long_fooled", "square_fooled", "apgd_ce_fooled",
                 "apgd_ce_tanh_fooled", "pgd_tanh_fooled")
_CHECK_NUMBERS = ("zero_grad_logits_pct", "zero_grad_tanh_pct")


def save_audit(res: AuditResults, models: Mapping[str, Contestant], device: Any = "cpu",
               root: Path | None = None) -> dict[str, Any]:
    """Write ``results/ch7_audit.json`` + ``.npz`` atomically, with every model's artifact name and SHA-256."""
    payload = {"keys": res.keys, "info": res.info, "walls": res.walls, "warnings": res.warnings,
               "check_numbers": {k: {nm: {q: c[nm][q] for q in _CHECK_NUMBERS} for nm in NORMS}
                                 for k, c in res.check.items()},
               "transfer_sources": {k: {nm: list(c[nm]["transfer_fooled"]) for nm in NORMS}
                                    for k, c in res.check.items()}}
    arrays = {f"fooled_{a}": f for a, f in res.fooled.items()}
    arrays["broken_by"] = res.broken_by
    arrays.update({f"distance_{a}": d for a, d in res.distance.items()})
    for i, k in enumerate(res.keys):
        for nm in NORMS:
            c = res.check[k][nm]
            arrays.update({f"check{i}_{nm}_{q}": np.asarray(c[q]) for q in _CHECK_ARRAYS})
            arrays.update({f"check{i}_{nm}_transfer{j}": np.asarray(f)
                           for j, f in enumerate(c["transfer_fooled"].values())})
    config = {**res.config, "models": _records(models, root)}
    wall = sum(sum(w.values()) for w in res.walls.values())
    return save_result(RESULT, "result-ch7", payload, arrays, config, wall, device, root)


def load_audit(root: Path | None = None, check_models: bool = True) -> AuditResults:
    """The cached audit (SHA-256 verified; refused when a model it attacked is no longer the committed one)."""
    doc, a = load_result(RESULT, root, check_models)
    assert a is not None
    keys = list(doc["keys"])
    check = {}
    for i, k in enumerate(keys):
        check[k] = {}
        for nm in NORMS:
            srcs = doc["transfer_sources"][k][nm]
            check[k][nm] = {**{q: a[f"check{i}_{nm}_{q}"] for q in _CHECK_ARRAYS},
                            **doc["check_numbers"][k][nm],
                            "transfer_fooled": {s: a[f"check{i}_{nm}_transfer{j}"] for j, s in enumerate(srcs)}}
    return AuditResults(keys, doc["info"], {x: a[f"fooled_{x}"] for x in ("fgsm", "pgd")}, a["broken_by"],
                        {x: a[f"distance_{x}"] for x in MINIMAL}, check, doc["warnings"], doc["walls"],
                        {k: v for k, v in doc["config"].items() if k != "models"}, doc["environment"])


#: How close a recomputed minimal distance must be to the cached one: DeepFool is deterministic and FAB's random
#: restarts are off; HopSkipJump draws random directions for every image in the batch, so another batch gives
#: another (near-)minimal image.
_DISTANCE_RTOL = {"deepfool": 0.05, "fab": 0.05, "hsj": 0.5}


def recheck_audit(res: AuditResults, models: Mapping[str, Contestant], data: Dataset, n_sample: int = 16,
                  seed: int = 0) -> dict[str, dict[str, Any]]:
    """Recompute a random sample of every cached table with the code as it is now, on ``n_sample`` images per
    table and model: FGSM and PGD curves (one eps per norm), AutoAttack's curve sequence, the three minimal
    distances and the checklist's full AutoAttack. Returns, per table, how many image outcomes were compared
    and how many disagree (attacks with random starts may flip an image near its boundary; the test bounds it)."""
    rng = np.random.default_rng(seed)
    cfg = AuditConfig(**res.config["audit"])
    budget = cfg.budget()
    x_all, y_all = to_images(data.x_test), data.y_test
    out: dict[str, dict[str, Any]] = {}

    def tally(table: str, cached: np.ndarray, now: np.ndarray) -> None:
        t = out.setdefault(table, {"compared": 0, "disagree": 0})
        t["compared"] += int(cached.size)
        t["disagree"] += int((cached != now).sum())

    for m, k in enumerate(res.keys):
        v = AttackView(models[k].model)
        for nn_, norm in enumerate(NORMS):
            e = int(rng.integers(len(EPS[norm])))
            eps = EPS[norm][e]
            for a in ("fgsm", "pgd"):
                pos = np.sort(rng.choice(res.fooled[a].shape[-1], min(n_sample, res.fooled[a].shape[-1]), False))
                idx = torch.as_tensor(pos)
                now = run_attack(a, v, x_all[idx], y_all[idx], norm, eps, budget, cfg.seed).fooled.numpy()
                tally(a, res.fooled[a][m, nn_, e, pos], now)
            pos = np.sort(rng.choice(res.broken_by.shape[-1], min(n_sample, res.broken_by.shape[-1]), False))
            idx = torch.as_tensor(pos)
            _, br = autoattack_standard(v, x_all[idx], y_all[idx], norm, eps, budget, cfg.seed, cfg.curve_sequence)
            robust = len(cfg.curve_sequence)
            tally("autoattack", res.broken_by[m, nn_, e, pos] == robust, br.numpy() == robust)
            Nk = len(res.check[k][norm]["aa_broken_by"])
            pos = np.sort(rng.choice(Nk, min(n_sample, Nk), False))
            idx = torch.as_tensor(pos)
            _, br = autoattack_standard(v, x_all[idx], y_all[idx], norm, CHECK_EPS[norm], budget, cfg.seed)
            tally("checklist autoattack", res.check[k][norm]["aa_broken_by"][pos] == len(STANDARD),
                  br.numpy() == len(STANDARD))
        for a in MINIMAL:
            d = res.distance[a][m]
            pos = np.sort(rng.choice(len(d), min(max(2, n_sample // 4), len(d)), False))
            idx = torch.as_tensor(pos)
            now = run_attack(a, v, x_all[idx], y_all[idx], "L2", None, budget, cfg.seed).distance.numpy()
            # a minimal distance "agrees" within _DISTANCE_RTOL (or both not found)
            same = np.isclose(now, d[pos], rtol=_DISTANCE_RTOL[a]) | (np.isinf(now) & np.isinf(d[pos]))
            tally(f"distance {a}", np.ones_like(same), same)
    return out


def chapter_results(profile: str, recompute: bool, data: Dataset, device: str | torch.device = "cpu",
                    seed: int | None = None) -> tuple[AuditResults, str]:
    """What chapter 7 shows and where it comes from: the cache (default; refused when stale), or everything
    computed here (``recompute`` or profile ``smoke``; nothing is written). ``seed``: the attacks' random seed
    (recompute only)."""
    if not recompute and profile != "smoke":
        if seed is not None:
            raise ValueError("seed applies when recomputing only (recompute=True or profile='smoke')")
        return load_audit(), "loaded from artifacts/results/"
    models = audited_models(profile, data, recompute=True, device=device)
    cfg = AuditConfig.preset(profile, **({"seed": seed} if seed is not None else {}))
    return compute_audit(models, data, cfg, device=device), "computed in this notebook"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Chapter 7's robustness audit. Without --attack: run it all and cache it under artifacts/. "
                    "With --attack: re-run one cell and print it (nothing is written).")
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=None, help="one DAM power (2, 3, 20, 30); 1: the ReLU baseline")
    ap.add_argument("--attack", default=None, choices=BOUNDED + MINIMAL + ("autoattack",))
    ap.add_argument("--norm", default="Linf", choices=NORMS)
    ap.add_argument("--eps", type=float, default=None, help="in [0, 1] pixel units")
    ap.add_argument("--images", type=int, default=1000, help="the first N test images (one cell only)")
    ap.add_argument("--parts-dir", default="runs/audit", help="per-model parts of a full run (resumable)")
    args = ap.parse_args(argv)
    if args.attack is not None:  # one cell: every argument checked before any work
        check_choice("n", args.n, (1, *(int(k.split("=")[1]) for k in AUDITED if k != BASELINE)))
        if args.attack in BOUNDED:
            check_float("eps", args.eps, 0.0, None, lo_inclusive=False)
    data = load_mnist()
    models = audited_models(args.profile, data, device=args.device)
    cfg = AuditConfig.preset(args.profile)
    if args.attack is None:
        res = compute_audit(models, data, cfg, device=args.device, progress=True, parts_dir=Path(args.parts_dir))
        save_audit(res, models, args.device)
        print({k: round(sum(w.values())) for k, w in res.walls.items()})
        return
    key = BASELINE if args.n == 1 else f"DAM n={args.n}"
    x, y = to_images(data.x_test[: args.images]).to(args.device), data.y_test[: args.images]
    v = AttackView(models[key].model)
    if args.attack == "autoattack":
        r, broken = autoattack_standard(v, x, y, args.norm, args.eps, cfg.budget(), cfg.seed)
        print({a: int((broken == i).sum()) for i, a in enumerate(STANDARD)})
    else:
        r = run_attack(args.attack, v, x, y, args.norm, args.eps, cfg.budget(), cfg.seed)
    fin = r.distance[torch.isfinite(r.distance)]
    print(f"{key} {args.attack} {args.norm} eps={args.eps}: robust accuracy {r.robust_accuracy():.1f} % of "
          f"{len(x)} images, median distance {float(fin.median()) if len(fin) else float('nan'):.3f}, "
          f"{r.wall_s:.1f} s; warnings: {r.warnings or 'none'}")


if __name__ == "__main__":
    main()
