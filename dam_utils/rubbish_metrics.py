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

Images are (N, 784) tensors with pixels in [-1, 1], as everywhere in ``dam_utils``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .model import DAM, N_CLASSES, confidence

__all__ = [
    "class_means",
    "cross_classification",
    "crossing_rows",
    "distance_rows",
    "nearest_distances",
    "nearest_in_class",
    "roughness",
    "transfer_means",
]


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
    target class, argmax of D) and ``confidence_%`` (mean ``Z`` of :func:`dam_utils.model.confidence` with
    ``beta_sm``, in percent; 10 % is the floor, ten equal outputs).
    """
    rows = []
    for g, x in images.items():
        t = targets[g].cpu()
        for c, model in models.items():
            D = model.predict_energy(x).cpu()
            z = confidence(torch.tanh(D), beta_sm)
            rows.append({"generator": g, "classifier": c,
                         "target_%": 100.0 * float((D.argmax(1) == t).double().mean()),
                         "confidence_%": 100.0 * float(z.double().mean())})
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
def nearest_distances(
    x: torch.Tensor, reference: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distance from each row of ``x`` (N, 784) to its nearest row of ``reference`` (M, 784), and that
    row's index; ((N,), (N,)). Exact (float64 accumulation of ``|a|^2 + |b|^2 - 2 a.b``), in batches."""
    ref = reference.double()
    ref_sq = (ref * ref).sum(1)  # (M,)
    dist, idx = [], []
    for lo in range(0, len(x), batch_size):
        a = x[lo : lo + batch_size].double()
        d2 = (a * a).sum(1, keepdim=True) + ref_sq - 2.0 * a @ ref.T  # (b, M)
        best, j = d2.min(1)
        dist.append(best.clamp_min(0.0).sqrt())
        idx.append(j)
    if not dist:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    return torch.cat(dist), torch.cat(idx)


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


def _median(t: torch.Tensor) -> float:
    return float(t.double().median())


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
    base = {"nn": _median(ref_nn), "mean": _median(ref_mean), "rough": _median(ref_rough)}

    def row(name: Any, x: torch.Tensor, t: torch.Tensor, nn: torch.Tensor, j: torch.Tensor,
            to_mean: torch.Tensor) -> dict[str, Any]:
        rough = roughness(x)
        return {"images": name, "count": len(x),
                "nearest_train": _median(nn), "nearest_train_rel": _median(nn) / base["nn"],
                "class_mean": _median(to_mean), "class_mean_rel": _median(to_mean) / base["mean"],
                "nn_label_is_target_%": 100.0 * float((y_train[j].cpu() == t.cpu()).double().mean()),
                "roughness": _median(rough), "roughness_rel": _median(rough) / base["rough"]}

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
                     "boundary distance, median": float(d.median()) if some else float("nan"),
                     "quartiles": f"{d.quantile(0.25):.3g}–{d.quantile(0.75):.3g}" if some else "–",
                     "÷ nearest training image of the second class": float(ratio.median()) if some else float("nan"),
                     "steps to cross, median": s["median_cross_step"],
                     "behind image labelled second choice (%)": 100 * s["behind_is_second"] / max(s["crossed"], 1),
                     "zero textbook gradient (images)": s["images_with_vanishing_naive_gradient"],
                     "float64 fallback (images)": s["images_with_float32_underflow"]})
    return rows
