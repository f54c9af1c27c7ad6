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
  that fool the net (:func:`attack_draw`); a draw reports the count and the fraction the memory gets wrong, on the
  adversarials and on their originals, and the Hamming distance between the binarised original and adversarial,
  because thresholding can erase a small perturbation (then the threshold, not the memory, is what resists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .data import Dataset
from .dense_net import DenseNet
from .hopfield import IterativeConfig, binarise, hebbian, iterative_rule, label_of, pseudo_inverse, recall, storkey
from .lbfgs import LBFGSConfig, lbfgs_adversarial
from .params import Preset, choice_field, float_field, int_field

__all__ = ["RULES", "MemoryConfig", "attack_draw", "binary_attack", "build_memory", "memory_labels", "prototypes",
           "score_draw"]

RULES = ("iterative", "hebbian", "storkey", "pseudo_inverse")


@dataclass(frozen=True)
class MemoryConfig(Preset):
    """The associative memory (module doc): ``per_class`` prototypes per digit, learned with ``rule``."""

    per_class: int = int_field(1, 1, 1000)
    rule: str = choice_field("iterative", RULES)
    threshold: float = float_field(0.5, 0.0, 1.0)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {}, "smoke": {}}


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


def score_draw(d: dict[str, np.ndarray], w: torch.Tensor, xi: torch.Tensor, labels: torch.Tensor,
               threshold: float = 0.5) -> dict[str, float]:
    """The document's number and its companions for one draw: how many adversarials (and originals) the memory
    labels wrongly, as a count and a fraction; the count among originals it got right; the mean Hamming distance
    between binarised original and adversarial, and how many adversarials binarise to their original exactly."""
    x, xa = torch.from_numpy(d["x"]), torch.from_numpy(d["x_adv"])
    y = torch.from_numpy(d["label"])
    po, _ = memory_labels(w, xi, labels, x, threshold)
    pa, _ = memory_labels(w, xi, labels, xa, threshold)
    ham = (binarise(x, threshold) != binarise(xa, threshold)).sum(1)
    right = po == y
    return {"n": float(len(y)), "wrong_adv": float((pa != y).sum()), "wrong_adv_frac": float((pa != y).double().mean()),
            "wrong_orig": float((po != y).sum()), "wrong_adv_given_right": float(((pa != y) & right).sum()),
            "hamming_mean": float(ham.double().mean()), "erased": float((ham == 0).sum())}
