"""dam_utils.confidence: the beta_sm fit of section 5 and the binning of Fig. 7."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from dam_utils import paper
from dam_utils.confidence import (
    BETA_BRACKET,
    NoRootError,
    beta_from_confidence,
    confidence_np,
    error_by_confidence,
    fit_beta_sm,
    mean_confidence,
)
from dam_utils.model import confidence


def _calibrated(beta: float, n: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Outputs Y in [-1, 1] and labels drawn from softmax(beta Y): a model calibrated at ``beta`` (its expected
    accuracy is its expected confidence), so the fit must recover ``beta``."""
    rng = np.random.default_rng(seed)
    y = np.tanh(rng.normal(0.0, 1.2, size=(n, 10)))
    p = np.exp(beta * (y - y.max(1, keepdims=True)))
    p /= p.sum(1, keepdims=True)
    u = rng.random(n)[:, None]
    labels = (p.cumsum(1) < u).sum(1).clip(0, 9)
    return y, labels


@pytest.mark.parametrize("beta", [paper.BETA_SM[2], paper.BETA_SM[20], 9.0])
def test_fit_recovers_a_known_beta(beta: float) -> None:
    y, labels = _calibrated(beta)
    fitted = fit_beta_sm(y, labels)
    assert fitted == pytest.approx(beta, rel=0.05)
    # and it solves its own equation to rounding
    accuracy = float((y.argmax(1) == labels).mean())
    assert mean_confidence(y, fitted) == pytest.approx(accuracy, abs=1e-9)


def test_mean_confidence_is_monotone_from_chance_to_one() -> None:
    y, _ = _calibrated(4.0, n=2000)
    betas = np.geomspace(1e-3, 1e6, 60)
    z = np.array([mean_confidence(y, b) for b in betas])
    assert np.all(np.diff(z) >= -1e-12)
    assert z[0] == pytest.approx(0.1, abs=1e-3) and z[-1] == pytest.approx(1.0, abs=1e-6)


def test_no_root_raises_or_clips() -> None:
    y, _ = _calibrated(4.0, n=2000)
    wrong = (y.argmax(1) + 1) % 10  # accuracy 0: below chance, no positive slope
    with pytest.raises(NoRootError, match="below"):
        fit_beta_sm(y, wrong)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fit_beta_sm(y, wrong, clip=True) == BETA_BRACKET[0]
    assert caught
    # every output tied at the top: Z can never exceed 1/2, but the accuracy is 100 %
    tied = np.zeros((10, 10))
    tied[:, :2] = 1.0
    with pytest.raises(NoRootError, match="above"):
        fit_beta_sm(tied, np.zeros(10, dtype=int))


def test_beta_single_from_the_papers_confidence() -> None:
    assert beta_from_confidence(paper.BETA_SM_SINGLE_Z) == pytest.approx(paper.BETA_SM_SINGLE, abs=0.05)
    b = beta_from_confidence(0.9)
    assert math.exp(b) / (math.exp(b) + 9 * math.exp(-b)) == pytest.approx(0.9)


def test_confidence_agrees_with_the_model_module() -> None:
    y, _ = _calibrated(4.0, n=500)
    for beta in (0.5, 3.2, 26.0):
        expect = confidence(torch.from_numpy(y), beta).numpy()
        assert np.allclose(confidence_np(y, beta), expect, atol=1e-12)
    # huge slopes stay finite and exact for the winner
    assert np.all(np.isfinite(confidence_np(y, 1e9)))


def test_bins_cover_every_image() -> None:
    y, labels = _calibrated(4.7, n=5000)
    saturated = np.full((7, 10), -1.0)
    saturated[:, 3] = 1.0  # Z = its maximum; with beta large Z == 1.0 exactly: must land in the last bin
    y = np.vstack([y, saturated])
    labels = np.concatenate([labels, np.full(7, 3)])
    for beta in (4.7, 1e6):
        out = error_by_confidence(y, labels, beta)
        assert sum(out["count"]) == len(labels)
        assert sum(out["errors"]) == int((y.argmax(1) != labels).sum())
        for e, c, k in zip(out["error"], out["count"], out["errors"], strict=True):
            if c:
                assert e == pytest.approx(100.0 * k / c)
            else:
                assert math.isnan(e)


def test_error_falls_with_confidence_for_a_calibrated_model() -> None:
    y, labels = _calibrated(4.7)
    out = error_by_confidence(y, labels, 4.7, bins=[0.1, 0.4, 0.7, 1.0])
    assert out["error"][0] > out["error"][1] > out["error"][2]


def test_bad_bins_are_refused() -> None:
    y, labels = _calibrated(4.0, n=100)
    with pytest.raises(ValueError):
        error_by_confidence(y, labels, 4.0, bins=[0.5, 0.2])
