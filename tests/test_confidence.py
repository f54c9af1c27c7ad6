"""dam_utils.confidence: the beta_sm fit of section 5 and the binning of Fig. 7."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dam_utils import paper
from dam_utils.confidence import (
    BETA_BRACKET,
    NoRootError,
    beta_from_confidence,
    confidence,
    confidence_results,
    error_by_confidence,
    fit_beta_sm,
    mean_confidence,
    outputs_and_predictions,
)


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
    fitted = fit_beta_sm(y, labels, predictions=y.argmax(1))
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
        fit_beta_sm(y, wrong, predictions=y.argmax(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fit_beta_sm(y, wrong, predictions=y.argmax(1), clip=True) == BETA_BRACKET[0]
    assert caught
    # every output tied at the top: Z can never exceed 1/2, but the accuracy is 100 %
    tied = np.zeros((10, 10))
    tied[:, :2] = 1.0
    with pytest.raises(NoRootError, match="above"):
        fit_beta_sm(tied, np.zeros(10, dtype=int), predictions=np.zeros(10, dtype=int))


def test_beta_single_from_the_papers_confidence() -> None:
    assert beta_from_confidence(paper.BETA_SM_SINGLE_Z) == pytest.approx(paper.BETA_SM_SINGLE, abs=0.05)
    b = beta_from_confidence(0.9)
    assert math.exp(b) / (math.exp(b) + 9 * math.exp(-b)) == pytest.approx(0.9)


def test_confidence_is_the_largest_softmax_probability() -> None:
    y, _ = _calibrated(4.0, n=500)
    for beta in (0.5, 3.2, 26.0):
        expect = torch.softmax(beta * torch.from_numpy(y), dim=1).max(1).values  # the definition, float64
        got = confidence(torch.from_numpy(y), beta)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        torch.testing.assert_close(got, expect, rtol=0, atol=1e-12)
        assert isinstance(confidence(y, beta), np.ndarray)
        assert np.allclose(confidence(y, beta), expect.numpy(), atol=1e-12)
    # huge slopes stay finite; two outputs tied at the top give exactly 1/2
    assert np.all(np.isfinite(confidence(y, 1e9)))
    tied = np.full((1, 10), -1.0)
    tied[0, [2, 7]] = 1.0
    assert confidence(tied, 1e9)[0] == pytest.approx(0.5)


class _Saturated:
    """A stand-in DAM whose energy differences D saturate tanh in float32 for classes 0 and 3."""

    def predict_energy(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        d = torch.full((len(x), 10), -50.0)
        d[:, 0], d[:, 3] = 40.0, 50.0  # tanh(40) == tanh(50) == 1.0 in float32
        return d


def test_labels_are_argmax_of_D_not_of_the_saturated_outputs() -> None:
    x = torch.zeros(4, 784)
    y, pred = outputs_and_predictions(_Saturated(), x)
    assert y.shape == (4, 10) and y.dtype == np.float64
    assert np.all(y.argmax(1) == 0)  # argmax of tanh(D) ties and resolves to class 0
    assert np.all(pred == 3)  # argmax of D
    data = SimpleNamespace(x_test=x, y_test=torch.full((4,), 3))
    r = confidence_results({30: _Saturated()}, data)[30]
    assert r["accuracy"] == 100.0 and r["test_error"] == 0.0
    assert sum(r["bins"]["errors"]) == 0


def test_bins_cover_every_image() -> None:
    y, labels = _calibrated(4.7, n=5000)
    saturated = np.full((7, 10), -1.0)
    saturated[:, 3] = 1.0  # Z = its maximum; with beta large Z == 1.0 exactly: must land in the last bin
    y = np.vstack([y, saturated])
    labels = np.concatenate([labels, np.full(7, 3)])
    for beta in (4.7, 1e6):
        out = error_by_confidence(y, labels, beta, predictions=y.argmax(1))
        assert sum(out["count"]) == len(labels)
        assert sum(out["errors"]) == int((y.argmax(1) != labels).sum())
        for e, c, k in zip(out["error"], out["count"], out["errors"], strict=True):
            if c:
                assert e == pytest.approx(100.0 * k / c)
            else:
                assert math.isnan(e)


def test_error_falls_with_confidence_for_a_calibrated_model() -> None:
    y, labels = _calibrated(4.7)
    out = error_by_confidence(y, labels, 4.7, predictions=y.argmax(1), bins=[0.1, 0.4, 0.7, 1.0])
    assert out["error"][0] > out["error"][1] > out["error"][2]


def test_bad_bins_are_refused() -> None:
    y, labels = _calibrated(4.0, n=100)
    with pytest.raises(ValueError):
        error_by_confidence(y, labels, 4.0, predictions=labels, bins=[0.5, 0.2])


def test_confidence_matches_paper_formula() -> None:
    """Outputs equal to the targets give Z = e^b / (e^b + 9 e^-b) (section 5)."""
    y = -torch.ones(1, 10)
    y[0, 4] = 1
    b = 3.2
    z = confidence(y, b).float()
    expected = torch.exp(torch.tensor(b)) / (torch.exp(torch.tensor(b)) + 9 * torch.exp(torch.tensor(-b)))
    torch.testing.assert_close(z, expected.reshape(1))
    assert abs(z.item() - 0.985) < 0.001
