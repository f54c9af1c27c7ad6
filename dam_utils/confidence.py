"""Confidence of a DAM_n classifier (Krotov & Hopfield 2018, section 5, Fig. 7).

The outputs ``Y`` (N, 10) in [-1, 1] of eq. (1) go through a softmax of slope ``beta_sm``::

    P_alpha = exp(beta_sm Y_alpha) / sum_gamma exp(beta_sm Y_gamma),     Z = max_alpha P_alpha,

and ``beta_sm`` is chosen per model so that the mean confidence on the test set equals the accuracy,
``mean Z = 1 - error`` (:func:`fit_beta_sm`). Fig. 7 bins the test images by Z and shows the error in each
bin (:func:`error_by_confidence`; the figure is :func:`dam_utils.figures_transfer.plot_error_by_confidence`).

Monotonicity (why bisection works): for one image with top output ``Y_a``,
``Z(beta) = 1 / (1 + sum_{gamma != a} exp(beta (Y_gamma - Y_a)))`` and every exponent is ``<= 0``, so
``Z`` never decreases with ``beta``: from ``Z(0) = 1/10`` to ``1/t`` as ``beta -> inf`` (``t``: the number
of outputs tied at the top, usually 1). The mean over images inherits this.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np
import torch

from .model import N_CLASSES
from .paper import BETA_SM_SINGLE

__all__ = [
    "BETA_BRACKET",
    "DEFAULT_BINS",
    "NoRootError",
    "beta_from_confidence",
    "confidence",
    "confidence_results",
    "error_by_confidence",
    "fit_beta_sm",
    "mean_confidence",
    "outputs_and_predictions",
]

#: Bisection bracket for beta_sm (the search runs on log beta). The paper's values lie in 4..26 and its
#: conclusions hold for 2 <= beta_sm <= 1e7, so [1e-3, 1e9] contains every value of interest.
BETA_BRACKET: tuple[float, float] = (1e-3, 1e9)

#: Confidence bins of Fig. 7: Z lies in [1/10, 1]; ten equal bins of width 0.09 (the last one closed).
DEFAULT_BINS: tuple[float, ...] = tuple(float(x) for x in np.linspace(0.1, 1.0, 11))


class NoRootError(ValueError):
    """No beta_sm in the bracket makes the mean confidence equal to the accuracy."""


def _as_np(a: Any, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


@overload
def confidence(outputs: torch.Tensor, beta_sm: float) -> torch.Tensor: ...
@overload
def confidence(outputs: np.ndarray, beta_sm: float) -> np.ndarray: ...


def confidence(outputs: torch.Tensor | np.ndarray, beta_sm: float) -> torch.Tensor | np.ndarray:
    """The confidence ``Z = max_alpha softmax(beta_sm Y)_alpha`` of each image (section 5); (N,) float64.

    ``outputs``: Y (N, 10) of eq. (1), a tensor (the result is a float64 tensor on the CPU) or anything
    NumPy reads (the result is a float64 array). The one confidence function of the book. Computed as
    ``1 / sum_gamma exp(beta (Y_gamma - Y_max))`` (every exponent <= 0), so that huge slopes (1e9) neither
    overflow nor lose the ties. ``Z`` depends on the outputs only, never on which tied class is the label.
    """
    y = _as_np(outputs)  # (N, 10) float64
    z = beta_sm * (y - y.max(1, keepdims=True))  # (N, 10), all <= 0
    out = 1.0 / np.exp(z).sum(1)  # (N,)
    return torch.from_numpy(out) if isinstance(outputs, torch.Tensor) else out


def mean_confidence(outputs: Any, beta_sm: float) -> float:
    """Mean confidence over the images (a number in [0.1, 1])."""
    return float(confidence(_as_np(outputs), beta_sm).mean())


def beta_from_confidence(z: float, n_classes: int = N_CLASSES) -> float:
    """The slope for which outputs exactly at their targets (+1 once, -1 elsewhere) have confidence ``z``:
    solves ``e^b / (e^b + (C - 1) e^-b) = z``, i.e. ``b = log((C - 1) z / (1 - z)) / 2`` (section 5: z = 0.985
    gives b ~ 3.2)."""
    if not 1.0 / n_classes < z < 1.0:
        raise ValueError(f"z must lie strictly between 1/{n_classes} and 1, got {z}")
    return 0.5 * math.log((n_classes - 1) * z / (1.0 - z))


def fit_beta_sm(
    outputs: Any,
    labels: Any,
    *,
    predictions: Any,
    bracket: tuple[float, float] = BETA_BRACKET,
    rtol: float = 1e-10,
    max_iter: int = 200,
    clip: bool = False,
) -> float:
    """The ``beta_sm`` for which the mean confidence on ``outputs`` equals the accuracy on ``labels``.

    ``outputs``: Y (N, 10) of eq. (1); ``labels``: true classes (N,); ``predictions``: the model's labels
    (N,), argmax of the energy difference D (:meth:`dam_utils.model.DAM.predict`), never argmax of Y: in
    float32 a saturated ``tanh`` ties several outputs at 1 and argmax would pick the lowest class. Accuracy =
    share of images whose prediction is the true class. Bisection on ``log beta`` inside ``bracket`` (mean confidence is
    non-decreasing in beta, see the module docstring) until the bracket is narrower than ``rtol`` relative.

    No root: when the accuracy is <= the mean confidence at ``bracket[0]`` (~1/10: a model at chance or
    worse; the slope would have to be <= 0), or >= the mean confidence at ``bracket[1]`` (outputs tied at
    the top keep Z at 1/2 or below, so a very accurate model with many ties cannot reach its accuracy).
    Then :class:`NoRootError` is raised, or with ``clip=True`` the nearer end of the bracket is returned
    with a warning.
    """
    y = _as_np(outputs)
    lab = _as_np(labels, np.int64)
    pred = _as_np(predictions, np.int64)
    if y.ndim != 2 or len(y) != len(lab) or len(y) != len(pred) or len(y) == 0:
        raise ValueError(f"outputs (N, C), labels (N,) and predictions (N,) must match, got {y.shape}, "
                         f"{lab.shape} and {pred.shape}")
    accuracy = float((pred == lab).mean())
    lo, hi = (math.log(b) for b in bracket)
    z_lo, z_hi = mean_confidence(y, math.exp(lo)), mean_confidence(y, math.exp(hi))
    if not z_lo < accuracy < z_hi:
        side = "below" if accuracy <= z_lo else "above"
        msg = (f"no beta_sm in [{bracket[0]:g}, {bracket[1]:g}] gives a mean confidence equal to the accuracy "
               f"{accuracy:.4f}: it lies {side} the reachable range [{z_lo:.4f}, {z_hi:.4f}]")
        if not clip:
            raise NoRootError(msg)
        warnings.warn(msg + "; returning the end of the bracket", RuntimeWarning, stacklevel=2)
        return bracket[0] if side == "below" else bracket[1]
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        if mean_confidence(y, math.exp(mid)) < accuracy:
            lo = mid
        else:
            hi = mid
        if hi - lo < rtol:
            break
    return math.exp(0.5 * (lo + hi))


def error_by_confidence(
    outputs: Any, labels: Any, beta_sm: float, *, predictions: Any, bins: Sequence[float] = DEFAULT_BINS
) -> dict[str, list[float] | list[int]]:
    """Fig. 7: bin the images by confidence Z and compute the classification error in each bin.

    ``predictions`` (N,): the model's labels, argmax of D (see :func:`fit_beta_sm`); an image is an error
    when its prediction differs from ``labels``.

    ``bins``: increasing bin edges; a Z equal to the last edge falls in the last bin, Z outside the edges
    in none (the default edges 0.1..1 cover every possible Z). Returns lists, one entry per bin:
    ``lo``, ``hi``, ``count``, ``errors`` (misclassified images), ``error`` (percent; NaN for empty bins)
    and ``mean_confidence`` (percent; NaN for empty bins).
    """
    y = _as_np(outputs)
    lab = _as_np(labels, np.int64)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins must be at least two increasing edges, got {bins!r}")
    z = confidence(y, beta_sm)  # (N,)
    wrong = _as_np(predictions, np.int64) != lab  # (N,)
    idx = np.searchsorted(edges, z, side="right") - 1
    idx[np.isclose(z, edges[-1]) | (z == edges[-1])] = len(edges) - 2
    inside = (idx >= 0) & (idx < len(edges) - 1)
    nb = len(edges) - 1
    count = np.bincount(idx[inside], minlength=nb)
    errors = np.bincount(idx[inside], weights=wrong[inside].astype(np.float64), minlength=nb)
    zsum = np.bincount(idx[inside], weights=z[inside], minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(count > 0, 100.0 * errors / np.maximum(count, 1), np.nan)
        mz = np.where(count > 0, 100.0 * zsum / np.maximum(count, 1), np.nan)
    return {"lo": edges[:-1].tolist(), "hi": edges[1:].tolist(), "count": count.astype(int).tolist(),
            "errors": errors.astype(int).tolist(), "error": err.tolist(), "mean_confidence": mz.tolist()}


def outputs_and_predictions(model: Any, x: torch.Tensor, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``(Y, labels)`` of a DAM on images ``x`` (N, 784): the outputs ``Y = tanh(D)`` of eq. (1) as float64
    (N, 10) and the predicted labels (N,) int64, argmax of D (the book's one argmax rule), from one pass."""
    d = model.predict_energy(x, batch_size=batch_size)  # (N, 10) D, the model's dtype
    return torch.tanh(d).double().cpu().numpy(), d.argmax(1).cpu().numpy().astype(np.int64)


def confidence_results(
    models: Mapping[int, Any],
    data: Any,
    bins: Sequence[float] = DEFAULT_BINS,
    batch_size: int = 1000,
    beta_single: float = BETA_SM_SINGLE,
) -> dict[int, dict[str, Any]]:
    """Fig. 7 for every model on the whole test set of ``data``: fitted beta_sm (``clip=True``: a model at
    chance gets the end of the bracket and ``beta_sm_clipped``), accuracy, mean confidence at the fitted
    and at the paper's single slope ``beta_single`` (the confidence of the model in clean test digits, the
    reference for every cell of Fig. 6), and the per-bin errors at the fitted slope. Labels are
    :meth:`~dam_utils.model.DAM.predict` (argmax of D)."""
    out: dict[int, dict[str, Any]] = {}
    labels = _as_np(data.y_test, np.int64)  # (N,)
    for n, model in models.items():
        y, pred = outputs_and_predictions(model, data.x_test, batch_size)  # (N, 10), (N,)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            beta = fit_beta_sm(y, labels, predictions=pred, clip=True)
        accuracy = float((pred == labels).mean())
        out[int(n)] = {
            "beta_sm": beta,
            "beta_sm_clipped": bool(caught),
            "accuracy": 100.0 * accuracy,
            "test_error": 100.0 * (1.0 - accuracy),
            "mean_confidence": 100.0 * mean_confidence(y, beta),
            "beta_single": float(beta_single),
            "mean_confidence_single": 100.0 * mean_confidence(y, beta_single),
            "bins": error_by_confidence(y, labels, beta, predictions=pred, bins=bins),
        }
    return out
