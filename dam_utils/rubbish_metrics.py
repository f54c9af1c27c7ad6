"""Numbers for chapter 2 (Krotov & Hopfield 2018, section 3): are the minima of C^alpha rubbish?

The paper judges its Fig. 3 by eye: speckled noise for n = 2, 3, recognisable digits for n = 20, 30.
The measures below put numbers beside the pictures; all are ours, defined here precisely.

* :func:`cross_classification` -- how every model labels every model's rubbish images: the share given
  their target class and the mean confidence ``Z = max softmax(beta_sm Y)`` (section 5; a preview of the
  paper's Fig. 6).
* :func:`nearest_distances`, :func:`distance_rows` -- L2 distance from each image to its nearest training
  image and to the mean training image of its (target) class, beside the same distances of clean test
  images: an image "like a digit" lies about as close to the training set as a test digit does.
* :func:`roughness` -- mean absolute difference of horizontally and vertically adjacent pixels: speckle
  makes it large, smooth pen strokes small.
* :func:`digit_share` -- Fig. 3 as a number: the share of rubbish images that are digits of their target
  class by two tests that owe nothing to the DAM (as near the training set as real test digits, and
  labelled as the target by a vote of the nearest training images).
* :func:`morph_measures` -- Fig. 4 as numbers: how far the boundary image lies from the clean image, and
  how much of the change points from the top class's mean image toward the second class's.
* :func:`median`, :func:`percent` -- the one median and share of the package (NaN when empty).

Images are (N, 784) tensors with pixels in [-1, 1], as everywhere in ``dam_utils``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .confidence import confidence
from .model import DAM, N_CLASSES

__all__ = [
    "class_means",
    "cross_classification",
    "crossing_rows",
    "digit_share",
    "distance_rows",
    "k_nearest",
    "median",
    "morph_measures",
    "nearest_distances",
    "nearest_in_class",
    "percent",
    "roughness",
    "transfer_means",
]


def median(t: torch.Tensor) -> float:
    """Median of a tensor's entries as a float (float64 arithmetic; the lower middle value for an even
    count, as :func:`torch.median`); NaN for an empty tensor."""
    return float(t.double().median()) if t.numel() else math.nan


def percent(t: torch.Tensor) -> float:
    """Share of true (or mean of 0/1) entries in percent; NaN for an empty tensor."""
    return 100.0 * float(t.double().mean()) if t.numel() else math.nan


@torch.no_grad()
def cross_classification(
    models: Mapping[int, DAM],
    images: Mapping[int, torch.Tensor],
    targets: Mapping[int, torch.Tensor],
    beta_sm: float,
) -> list[dict[str, Any]]:
    """One row per (generator, classifier) pair: the classifier's labels on the generator's images.

    ``images[g]`` (N, 784) and ``targets[g]`` (N,) are the rubbish images of generator ``g`` and their
    target classes. Returns dicts with ``generator``, ``classifier``, ``target_%`` (share labelled as the
    target class, argmax of D) and ``confidence_%`` (mean ``Z`` of :func:`dam_utils.confidence.confidence` with
    ``beta_sm``, in percent; 10 % is the floor, ten equal outputs).
    """
    rows = []
    for g, x in images.items():
        t = targets[g].cpu()
        for c, model in models.items():
            D = model.predict_energy(x).cpu()
            z = torch.as_tensor(confidence(torch.tanh(D), beta_sm))  # (N,)
            rows.append({"generator": g, "classifier": c, "target_%": percent(D.argmax(1) == t),
                         "confidence_%": percent(z)})
    return rows


def transfer_means(rows: list[dict[str, Any]], split: int = 10) -> dict[str, float]:
    """Group means of :func:`cross_classification` rows: models with ``n < split`` are "small", the others
    "large". Keys ``"{gen}_to_{clf}_{target|confidence}"`` with gen, clf in small/large; pairs of a model
    with itself are left out. NaN for an empty group."""
    out: dict[str, float] = {}
    for gen in ("small", "large"):
        for clf in ("small", "large"):
            sel = [r for r in rows if r["generator"] != r["classifier"]
                   and (r["generator"] < split) == (gen == "small")
                   and (r["classifier"] < split) == (clf == "small")]
            for key in ("target", "confidence"):
                vals = [r[f"{key}_%"] for r in sel]
                out[f"{gen}_to_{clf}_{key}"] = sum(vals) / len(vals) if vals else math.nan
    return out


@torch.no_grad()
def k_nearest(
    x: torch.Tensor, reference: torch.Tensor, k: int = 1, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distances from each row of ``x`` (N, 784) to its ``k`` nearest rows of ``reference`` (M, 784),
    nearest first, and their indices; ((N, k) float64, (N, k) long).

    Candidates are chosen in float32 (``|a|^2 + |b|^2 - 2 a.b``, one matrix product per chunk of
    ``batch_size`` rows: about 60 MB for 60000 references), then their distances are recomputed exactly
    in float64. Fast enough for 60000 training images on two cores; nothing is cached.
    """
    ref = reference.float()
    ref_sq = (ref * ref).sum(1)  # (M,)
    dist, idx = [], []
    for lo in range(0, len(x), batch_size):
        a = x[lo : lo + batch_size].float()
        d2 = torch.addmm(ref_sq.unsqueeze(0), a, ref.T, alpha=-2.0)  # (b, M) = |b|^2 - 2 a.b
        j = d2.topk(k, dim=1, largest=False).indices  # (b, k); |a|^2 does not change the order
        exact = (x[lo : lo + batch_size].double().unsqueeze(1) - reference[j].double()).norm(dim=2)  # (b, k)
        order = exact.argsort(dim=1)
        dist.append(exact.gather(1, order))
        idx.append(j.gather(1, order))
    if not dist:
        return torch.zeros(0, k, dtype=torch.float64), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(dist), torch.cat(idx)


def nearest_distances(
    x: torch.Tensor, reference: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distance from each row of ``x`` (N, 784) to its nearest row of ``reference`` (M, 784), and that
    row's index; ((N,) float64, (N,) long). See :func:`k_nearest`."""
    d, j = k_nearest(x, reference, 1, batch_size)
    return d[:, 0], j[:, 0]


@torch.no_grad()
def nearest_in_class(
    x: torch.Tensor, classes: torch.Tensor, x_train: torch.Tensor, y_train: torch.Tensor
) -> torch.Tensor:
    """L2 distance from each row of ``x`` (N, 784) to the nearest training image of class ``classes[i]``
    (e.g. the second choice of a deformation: how far away is a real example of the target class?); (N,)."""
    classes = classes.cpu()
    out = torch.full((len(x),), math.nan, dtype=torch.float64)
    for c in classes.unique().tolist():
        sel = classes == c
        out[sel] = nearest_distances(x[sel], x_train[y_train.cpu() == c])[0]
    return out


def class_means(x: torch.Tensor, y: torch.Tensor, n_classes: int = N_CLASSES) -> torch.Tensor:
    """Mean image of each class; (n_classes, 784) float64."""
    x = x.double()
    return torch.stack([x[y == c].mean(0) for c in range(n_classes)])


def roughness(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontally and vertically adjacent pixels of each 28 x 28
    image; (N,) float64. 0 for a flat image, 2 for a perfect +-1 checkerboard."""
    img = x.double().reshape(-1, 28, 28)
    dx = (img[:, :, 1:] - img[:, :, :-1]).abs().flatten(1)
    dy = (img[:, 1:, :] - img[:, :-1, :]).abs().flatten(1)
    return torch.cat([dx, dy], 1).mean(1)


@torch.no_grad()
def distance_rows(
    images: Mapping[Any, torch.Tensor],
    targets: Mapping[Any, torch.Tensor],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_ref: torch.Tensor,
    y_ref: torch.Tensor,
    reference_name: str = "test images",
) -> list[dict[str, Any]]:
    """Distances of each image set to the training set, beside those of a reference set (test images).

    One row per entry of ``images`` (key -> (N, 784), target classes ``targets[key]``) and a last row for
    ``x_ref``/``y_ref``. Columns: median distance to the nearest training image, median distance to the
    mean training image of the target class, both also divided by the reference set's median; the share
    of images whose nearest training image has the target label (1-nearest-neighbour agreement); the
    median :func:`roughness`, also relative to the reference.
    """
    means = class_means(x_train, y_train)
    ref_nn, ref_j = nearest_distances(x_ref, x_train)
    ref_mean = (x_ref.double() - means[y_ref]).norm(dim=1)
    ref_rough = roughness(x_ref)
    base = {"nn": median(ref_nn), "mean": median(ref_mean), "rough": median(ref_rough)}

    def row(name: Any, x: torch.Tensor, t: torch.Tensor, nn: torch.Tensor, j: torch.Tensor,
            to_mean: torch.Tensor) -> dict[str, Any]:
        rough = roughness(x)
        return {"images": name, "count": len(x),
                "nearest_train": median(nn), "nearest_train_rel": median(nn) / base["nn"],
                "class_mean": median(to_mean), "class_mean_rel": median(to_mean) / base["mean"],
                "nn_label_is_target_%": percent(y_train[j].cpu() == t.cpu()),
                "roughness": median(rough), "roughness_rel": median(rough) / base["rough"]}

    rows = []
    for key, x in images.items():
        t = targets[key].cpu()
        nn, j = nearest_distances(x, x_train)
        rows.append(row(key, x, t, nn, j, (x.double() - means[t]).norm(dim=1)))
    rows.append(row(reference_name, x_ref, y_ref.cpu(), ref_nn, ref_j, ref_mean))
    return rows


def crossing_rows(results: dict[int, Any], x_train: torch.Tensor, y_train: torch.Tensor) -> list[dict[str, Any]]:
    """Chapter 3's table, one row per model: how many images crossed the decision boundary, how far
    (median L2 distance clean -> boundary, also relative to the nearest training image of the second
    class), after how many steps, whether the behind image is the second choice, and how often the
    naive gradient vanished or float32 underflowed. ``results``: ``{n: DeformResult}``."""
    rows = []
    for n, r in results.items():
        c = r.crossed
        d = r.boundary_distance()[c].double()  # (crossed,)
        ratio = d / nearest_in_class(r.clean[c], r.second[c], x_train, y_train)
        s = r.summary()
        some = len(d) > 0
        rows.append({"n": n, "images": s["images"], "crossed (%)": 100 * s["crossed"] / s["images"],
                     "boundary distance, median": median(d),
                     "quartiles": f"{d.quantile(0.25):.3g}–{d.quantile(0.75):.3g}" if some else "–",
                     "÷ nearest training image of the second class": median(ratio),
                     "steps to cross, median": s["median_cross_step"],
                     "behind image labelled second choice (%)": 100 * s["behind_is_second"] / max(s["crossed"], 1),
                     "zero textbook gradient (images)": s["images_with_vanishing_naive_gradient"],
                     "float64 fallback (images)": s["images_with_float32_underflow"]})
    return rows


#: The two tests of :func:`digit_share` as the chapters use them: a 3-nearest-images vote, and the 99th
#: percentile of real test digits' nearest-training-image distance, over 2000 of them.
DIGIT_K = 3
DIGIT_PERCENTILE = 99.0
DIGIT_REFERENCE = 2000


@torch.no_grad()
def digit_share(
    images: torch.Tensor,
    targets: torch.Tensor,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    k: int = DIGIT_K,
    percentile: float = DIGIT_PERCENTILE,
    n_reference: int = DIGIT_REFERENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Fig. 3 as a number: which rubbish images are digits of their target class, judged without the DAM.

    Two tests, both needed (either alone is fooled: the model's own label by a captured memory, the
    nearest-images vote by speckle):

    * ``near_manifold``: the distance from the image to its nearest training image is at most the
      ``percentile``-th percentile of the same distance for real test digits (a fixed subsample of
      ``n_reference`` rows of ``x_test``, drawn with ``seed``; test digits are not in the training set);
    * ``judge_says_target``: a strict majority (more than ``k / 2``) of its ``k`` nearest training images
      carry the target label.

    ``images`` (N, 784), ``targets`` (N,), ``x_train`` (M, 784), ``y_train`` (M,), ``x_test`` (T, 784).
    Returns per-image bools ``near_manifold``, ``judge_says_target``, ``is_digit`` (both) and
    ``nearest_distance`` (N,) float64; the reference ``threshold``; and ``share_%`` (of ``is_digit``),
    ``near_manifold_%``, ``judge_%``.
    """
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(x_test), generator=gen)[: min(n_reference, len(x_test))]
    ref_d, _ = k_nearest(x_test[pick], x_train, 1)  # (R, 1)
    threshold = float(torch.quantile(ref_d[:, 0], percentile / 100.0))
    d, j = k_nearest(images, x_train, k)  # (N, k)
    votes = (y_train.cpu()[j] == targets.cpu().unsqueeze(1)).sum(1)  # (N,)
    near = d[:, 0] <= threshold
    judge = 2 * votes > k
    digit = near & judge
    return {"near_manifold": near, "judge_says_target": judge, "is_digit": digit, "nearest_distance": d[:, 0],
            "threshold": threshold, "share_%": percent(digit), "near_manifold_%": percent(near),
            "judge_%": percent(judge)}


def morph_measures(
    clean: torch.Tensor,
    boundary: torch.Tensor,
    top: torch.Tensor,
    second: torch.Tensor,
    class_means: torch.Tensor,
) -> dict[str, Any]:
    """Fig. 4 as numbers: does the boundary image carry the second digit, or only a small nudge?

    Per image: ``distance`` = ``||boundary - clean||_2`` and ``cosine`` between the change
    ``boundary - clean`` and ``mean[second] - mean[top]`` (the class means, e.g. :func:`class_means` of the
    training set): 1 when the image moves straight from the top class's mean image toward the second's,
    about 0 for a change unrelated to the two digits (NaN where the image did not move). Also their
    ``median_distance`` and ``median_cosine``.

    ``clean``, ``boundary`` (N, 784); ``top``, ``second`` (N,) class labels; ``class_means`` (10, 784).
    Select the images that crossed before calling (a failed deformation has no boundary image).
    """
    change = boundary.double() - clean.double()  # (N, 784)
    means = class_means.double().to(change.device)
    toward = means[second.to(change.device)] - means[top.to(change.device)]  # (N, 784)
    dist = change.norm(dim=1)  # (N,)
    cos = (change * toward).sum(1) / (dist * toward.norm(dim=1))
    return {"distance": dist, "cosine": cos, "median_distance": median(dist), "median_cosine": median(cos)}
