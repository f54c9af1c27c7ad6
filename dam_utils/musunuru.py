"""Musunuru et al.'s experiment (seed 004, §II.B.2; appendix C): adversarial images of a dense network, recalled
by a Hopfield associative memory.

"we generated 40 adversarial images from the MNIST dataset, for a dense network and recalled them using a
Iterative Learning Associative Model Network. We found that the number of images which were misclassified [...]
was 0.7." The document gives no attack, budget, memory size or read-out; the choices (reading notes, B.1-B.2):

* the memory stores ``per_class`` prototypes per digit, the training images closest to their class mean,
  binarised (pixel > 0.5 -> +1) (:func:`prototypes`), with the iterative rule (:mod:`dam_utils.hopfield`);
* an image is classified by binarising it, recalling asynchronously from it, and taking the label of the stored
  pattern the final state overlaps most (:func:`memory_labels`);
* each draw takes ``n_images`` test images the dense net classifies correctly and attacks each with the
  box-constrained L-BFGS attack of appendix B (:mod:`dam_utils.lbfgs`) to a random wrong target, keeping the ones
  that fool the net (:func:`attack_draw`), and with two secondary attacks on the same originals: the
  minimal-step FGSM (:func:`fgsm_minimal`) and a binary-space attack whose perturbation survives binarisation
  (:func:`binary_attack`). The scores (:mod:`dam_utils.musunuru_report`) include the Hamming distance between the
  binarised original and adversarial, because thresholding can erase a small perturbation (then the threshold,
  not the memory, is what resists).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .artifacts import committed_record
from .data import Dataset, load_mnist
from .dense_net import DENSE_TABLE, DenseConfig, DenseNet, load_dense, permuted_copies
from .fgsm import FGSMDirection, fgsm_images
from .hopfield import IterativeConfig, binarise, hebbian, iterative_rule, label_of, pseudo_inverse, recall, storkey
from .lbfgs import LBFGSConfig, lbfgs_adversarial
from .params import PROFILES, Preset, check_choice, int_field
from .results_cache import load_result, save_result

__all__ = ["COPIES", "DRAWS", "FGSM_EPS", "RULES", "DrawsConfig", "attack_draw", "binary_attack",
           "build_memory", "fgsm_minimal", "load_copies", "load_draws", "memory_labels", "prototypes", "recheck_draws",
           "run_draws", "save_copies", "save_draws"]

#: The cache of the draws: ``artifacts/results/c_musunuru_draws.*``.
DRAWS = "c_musunuru_draws"
#: The cache of the permuted copies of the cone check: ``artifacts/results/c_musunuru_copies.*``.
COPIES = "c_musunuru_copies"
#: The secondary attack's step sizes (reading notes, E3): the smallest that fools the net is kept.
FGSM_EPS = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30)

RULES = ("iterative", "hebbian", "storkey", "pseudo_inverse")


def prototypes(data: Dataset, per_class: int = 1, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``per_class`` training images of each digit closest (Euclidean) to the digit's mean image, binarised:
    patterns (10 * per_class, 784) of +-1 and their labels."""
    x = (data.x_train + 1) / 2  # (60000, 784) in [0, 1]
    pats, labels = [], []
    for c in range(10):
        xc = x[data.y_train == c]
        d = (xc - xc.mean(0)).norm(dim=1)
        pats.append(binarise(xc[d.argsort()[:per_class]], threshold))
        labels += [c] * per_class
    return torch.cat(pats), torch.tensor(labels)


def build_memory(xi: torch.Tensor, rule: str, icfg: IterativeConfig | None = None
                 ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The weight matrix for patterns ``xi`` with ``rule`` (and the iterative rule's per-iteration history)."""
    check_choice("rule", rule, RULES)
    if rule == "iterative":
        return iterative_rule(xi, icfg or IterativeConfig(), keep=(0, 1))
    return {"hebbian": hebbian, "storkey": storkey, "pseudo_inverse": pseudo_inverse}[rule](xi), []


def memory_labels(w: torch.Tensor, xi: torch.Tensor, labels: torch.Tensor, x01: torch.Tensor,
                  threshold: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Classify images ``x01`` (B, 784) in [0, 1] by recall: binarise, recall, label of the closest stored pattern.
    Returns the labels (B,) and the recalled states (B, 784)."""
    s, _ = recall(w, binarise(x01, threshold), seed=seed)
    return label_of(s, xi, labels), s


def attack_draw(net: DenseNet, data: Dataset, n_images: int, rng: np.random.Generator,
                lcfg: LBFGSConfig | None = None, max_attempts: int = 1000) -> dict[str, np.ndarray]:
    """One draw: test images the net classifies correctly, each attacked (L-BFGS) to a random wrong target until
    ``n_images`` fool the net. Returns ``index``, ``label``, ``target`` (n,), ``x`` and ``x_adv`` (n, 784) in
    [0, 1], ``l2`` (n,), and ``attempts`` (the number of images tried)."""
    x01 = (data.x_test + 1) / 2
    correct = np.flatnonzero(net.predict(x01).numpy() == data.y_test.numpy())
    rows: dict[str, list[Any]] = {k: [] for k in ("index", "label", "target", "x", "x_adv", "l2")}
    attempts = 0
    for i in rng.permutation(correct)[:max_attempts]:
        if len(rows["index"]) == n_images:
            break
        attempts += 1
        label = int(data.y_test[i])
        target = int(rng.choice([t for t in range(10) if t != label]))
        res = lbfgs_adversarial(net, x01[i].numpy(), target, lcfg)
        if not res.success:
            continue
        for k, v in (("index", int(i)), ("label", label), ("target", target), ("x", x01[i].numpy()),
                     ("x_adv", res.x_adv), ("l2", res.l2)):
            rows[k].append(v)
    if len(rows["index"]) < n_images:
        raise RuntimeError(f"only {len(rows['index'])} of {n_images} images fooled the net in {attempts} attempts")
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["x"], out["x_adv"] = out["x"].astype(np.float32), out["x_adv"].astype(np.float32)
    out["attempts"] = np.asarray(attempts)
    return out


def binary_attack(net: DenseNet, x_bin: torch.Tensor, label: int, max_flips: int = 200) -> tuple[torch.Tensor, int]:
    """An attack that survives binarisation: starting from a black-and-white image ``x_bin`` (784,) of 0 / 1,
    flip one pixel at a time, the unflipped pixel whose flip raises the loss of ``label`` most to first order
    (gradient x (1 - 2 x_i)), until the net's label changes. Returns the image and the flips used (``max_flips``
    + 1 when the label never changed)."""
    x = x_bin.clone().float().reshape(1, 784)
    free = torch.ones(784, dtype=torch.bool)
    y = torch.tensor([int(label)])
    for flips in range(max_flips + 1):
        xg = x.clone().requires_grad_(True)
        out = net(xg)
        if int(out.argmax(1)) != label:
            return x[0], flips
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), xg)
        gain = (g[0] * (1 - 2 * x[0])).masked_fill(~free, -float("inf"))
        i = int(gain.argmax())
        x[0, i] = 1 - x[0, i]
        free[i] = False
    return x[0], max_flips + 1


def fgsm_minimal(net: DenseNet, x01: torch.Tensor, y: torch.Tensor, eps: tuple[float, ...] = FGSM_EPS
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """The secondary attack: untargeted FGSM up the net's own loss (the squared error against the one-hot
    label), with the smallest step in ``eps`` that changes the net's label. Returns the images (B, 784) in
    [0, 1] (the original where no step fools the net) and the step used (B,) (NaN: not fooled)."""
    xg = x01.clone().requires_grad_(True)
    loss = torch.nn.functional.mse_loss(net(xg), torch.nn.functional.one_hot(y.long(), 10).float(), reduction="sum")
    (g,) = torch.autograd.grad(loss, xg)
    direction = FGSMDirection(torch.sign(g), (g == 0).all(1))
    out, used = x01.clone(), np.full(len(x01), np.nan)
    for e in eps:
        xe = (fgsm_images(x01 * 2 - 1, direction, e) + 1) / 2  # fgsm_images works on the [-1, 1] scale
        hit = (net.predict(xe) != y).numpy() & np.isnan(used)
        out[hit], used[hit] = xe[hit], e
    return out, used


@dataclass(frozen=True)
class DrawsConfig(Preset):
    """``draws`` draws of ``n_images`` adversarials each (the document's 40), seeded by (``seed``, draw);
    ``max_flips`` bounds the binary-space attack; ``copies`` permuted copies for the cone check, trained for
    ``copy_epochs`` epochs (:func:`~dam_utils.dense_net.permuted_copies`)."""

    draws: int = int_field(10, 1, 1000)
    n_images: int = int_field(40, 1, 10000)
    seed: int = int_field(0, 0, 2**31 - 1)
    max_flips: int = int_field(200, 1, 784)
    copies: int = int_field(10, 1, 1000)
    copy_epochs: int = int_field(2, 1, 10000)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {}, "smoke": {"draws": 2, "n_images": 5,
                                                                                      "copies": 2, "copy_epochs": 1}}


def run_draws(net: DenseNet, data: Dataset, cfg: DrawsConfig, lcfg: LBFGSConfig | None = None,
              progress: bool = True) -> dict[str, np.ndarray]:
    """Every draw (:func:`attack_draw`), with the secondary attacks on the same originals: the minimal-step
    FGSM (:func:`fgsm_minimal`) and the binary-space attack (:func:`binary_attack`) from the binarised
    original. Arrays over all draws' images (R * n,): ``draw``, ``index``, ``label``, ``target``, ``l2``,
    ``x_adv``, ``fgsm_eps``, ``x_fgsm``, ``flips``, ``x_bin_adv``; ``attempts`` (R,)."""
    lcfg = lcfg or LBFGSConfig()
    x_test = (data.x_test + 1) / 2
    parts: list[dict[str, np.ndarray]] = []
    for r in tqdm(range(cfg.draws), desc="draws", disable=not progress):
        d = attack_draw(net, data, cfg.n_images, np.random.default_rng([cfg.seed, r]), lcfg)
        x, y = x_test[d["index"]], torch.from_numpy(d["label"])
        d["x_fgsm"], d["fgsm_eps"] = fgsm_minimal(net, x, y)
        bins = [binary_attack(net, xb, int(lab), cfg.max_flips) for xb, lab in zip(binarise(x) > 0, y, strict=True)]
        d["x_bin_adv"] = torch.stack([b[0] for b in bins]).numpy().astype(np.uint8)
        d["flips"] = np.array([b[1] for b in bins])
        d["draw"] = np.full(cfg.n_images, r)
        del d["x"]
        parts.append(d)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "attempts"}
    out["x_fgsm"] = out["x_fgsm"].astype(np.float32)
    out["attempts"] = np.array([int(p["attempts"]) for p in parts])
    return out


def _dense_record(profile: str, root: Path | None) -> dict[str, dict[str, str]]:
    return committed_record("dense", DENSE_TABLE, profile, f"python -m dam_utils.dense_net --profile {profile}", root)


def save_draws(draws: dict[str, np.ndarray], cfg: DrawsConfig, lcfg: LBFGSConfig, profile: str, wall: float,
               root: Path | None = None) -> dict[str, Any]:
    """Cache the draws with the dense net's SHA-256 and the configs (refused when the committed net changes)."""
    config = {"models": _dense_record(profile, root), "draws": cfg.to_dict(), "lbfgs": lcfg.to_dict(),
              "fgsm_eps": list(FGSM_EPS), "profile": profile}
    payload = {"n_images": len(draws["index"]), "attempts": int(draws["attempts"].sum())}
    return save_result(DRAWS, "result-c-draws", payload, draws, config, wall, "cpu", root)


def load_draws(root: Path | None = None, check_models: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The cached draws and the cache's document (SHA-256 verified; refused when stale)."""
    doc, arrays = load_result(DRAWS, root, check_models)
    assert arrays is not None
    return arrays, doc


def recheck_draws(draws: dict[str, np.ndarray], doc: dict[str, Any], n_sample: int = 3, seed: int = 0,
                  root: Path | None = None) -> dict[str, float]:
    """Re-run all three attacks on ``n_sample`` random cached images (same image, target and configs; every
    attack is deterministic): how many differ, and the largest L-BFGS image difference."""
    net, _ = load_dense(doc["config"]["models"]["dense"]["name"], root)
    lcfg, cfg = LBFGSConfig(**doc["config"]["lbfgs"]), DrawsConfig(**doc["config"]["draws"])
    x_test = (load_mnist().x_test + 1) / 2
    out = {"checked": 0, "mismatches": 0, "max_abs": 0.0}
    for j in np.random.default_rng(seed).choice(len(draws["index"]), size=min(n_sample, len(draws["index"])),
                                                replace=False):
        x, y = x_test[int(draws["index"][j])], int(draws["label"][j])
        res = lbfgs_adversarial(net, x.numpy(), int(draws["target"][j]), lcfg)
        xf, ef = fgsm_minimal(net, x[None], torch.tensor([y]))
        xb, flips = binary_attack(net, binarise(x[None])[0] > 0, y, cfg.max_flips)
        out["checked"] += 1
        same = (res.success and np.isclose(res.l2, draws["l2"][j], rtol=1e-9)
                and np.array_equal(ef, draws["fgsm_eps"][j : j + 1], equal_nan=True)
                and np.array_equal(xf[0].numpy(), draws["x_fgsm"][j]) and flips == draws["flips"][j]
                and np.array_equal(xb.numpy().astype(np.uint8), draws["x_bin_adv"][j]))
        out["mismatches"] += int(not same)
        out["max_abs"] = max(out["max_abs"], float(np.abs(res.x_adv - draws["x_adv"][j]).max()))
    return out


def save_copies(copies: dict[str, Any], cfg: DenseConfig, n_copies: int, profile: str, wall: float,
                root: Path | None = None) -> dict[str, Any]:
    """Cache the permuted-copies check with the dense net's SHA-256 (its training config is the net's)."""
    config = {"models": _dense_record(profile, root), "dense": cfg.to_dict(), "copies": n_copies, "profile": profile}
    arrays = {k: v for k, v in copies.items() if isinstance(v, np.ndarray)}
    payload = {"reference_inversions_bias": copies["reference_inversions_bias"]}
    return save_result(COPIES, "result-c-copies", payload, arrays, config, wall, "cpu", root)


def load_copies(root: Path | None = None, check_models: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The cached permuted-copies check and its document."""
    doc, arrays = load_result(COPIES, root, check_models)
    assert arrays is not None
    return arrays, doc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Appendix C: the 10 draws of 40 adversarial images of the dense net.")
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--part", default="all", choices=("all", "draws", "copies"))
    args = ap.parse_args(argv)
    net, e = load_dense(_dense_record(args.profile, None)["dense"]["name"])
    cfg, lcfg, data = DrawsConfig.preset(args.profile), LBFGSConfig.preset(args.profile), load_mnist()
    if args.part in ("all", "draws"):
        t0 = time.perf_counter()
        draws = run_draws(net, data, cfg, lcfg)
        out = save_draws(draws, cfg, lcfg, args.profile, time.perf_counter() - t0)
        print(f"{out['path']}: {len(draws['index'])} images, {int(draws['attempts'].sum())} attempts, "
              f"{time.perf_counter() - t0:.0f} s")
    if args.part in ("all", "copies"):
        t0, dcfg = time.perf_counter(), DenseConfig(**{**e["config"], "epochs": cfg.copy_epochs})
        copies = permuted_copies(dcfg, data, cfg.copies)
        out = save_copies(copies, dcfg, cfg.copies, args.profile, time.perf_counter() - t0)
        print(f"{out['path']}: largest weight difference {copies['max_abs'].max():.2e}, "
              f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
