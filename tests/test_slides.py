"""dam_utils.slides: the talk slides' two update rules against the book's model code, the properties of the
spin dynamics, bad arguments, and the cached n = 2 / n = 8 transfer table recomputed on a sample."""

from __future__ import annotations

import pytest
import torch

from dam_utils import artifacts
from dam_utils.model import DAM
from dam_utils.params import ParameterError
from dam_utils.paths import artifacts_dir
from dam_utils.results_cache import load_transfer_results
from dam_utils.slides import (
    SLIDES_N,
    SLIDES_TRANSFER,
    SlidesConfig,
    capacity_table,
    energy,
    local_field,
    recall,
    slides_classifier,
    spin_class_update,
)
from dam_utils.transfer import recheck_transfer

RECHECK_IMAGES = 100
RECHECK_TOLERANCE = 0.01  # as Fig. 5's recheck: float noise can move an image one small step past the boundary


def _float64(model: DAM) -> DAM:
    return DAM(model.xi.double(), model.xc.double(), model.n, model.T)


def test_slides_classifier_is_eq_1(small_model, mnist) -> None:
    v = mnist.x_test[:40]
    c = slides_classifier(small_model, v, batch_size=7)  # batches that do not divide the images
    assert c.dtype == torch.float64 and c.shape == (40, 10)
    assert torch.allclose(c, _float64(small_model)(v.double()), rtol=0, atol=1e-12)
    assert torch.allclose(c.float(), small_model(v), atol=1e-4)


def test_class_neuron_enters_only_through_its_sign(small_model, mnist) -> None:
    v = mnist.x_test[:20]
    x = -torch.ones(20, 10, dtype=torch.float64)
    base = slides_classifier(small_model, v, x)
    x[:, 3] = 1.0
    on = slides_classifier(small_model, v, x)
    assert torch.allclose(on[:, 3], -base[:, 3], atol=1e-12)  # swapping x_3's sign swaps the two F terms
    assert not torch.allclose(on[:, 4], base[:, 4])  # x_3 is one of the "others" of every other class


def test_spin_rule_on_the_class_neurons_gives_the_sign_of_eq_1(small_model, mnist) -> None:
    v = mnist.x_test[:50]
    assert torch.equal(spin_class_update(small_model, v), torch.sign(_float64(small_model)(v.double())))


@pytest.mark.parametrize("F", ["poly", "rect"])
@pytest.mark.parametrize("n", [2, 3, 4])
def test_recall_never_increases_the_energy(F: str, n: int) -> None:
    g = torch.Generator().manual_seed(n)
    patterns = torch.randint(0, 2, (60, 40), generator=g).double() * 2 - 1
    probes = torch.randint(0, 2, (8, 40), generator=g).double() * 2 - 1
    res = recall(patterns, probes, n, F, max_sweeps=50)
    assert torch.all(res.energies[1:] <= res.energies[:-1] + 1e-9)
    f = {"poly": lambda z: z**n, "rect": lambda z: z.clamp(min=0) ** n}[F]
    assert torch.allclose(res.energies[-1], energy(patterns, res.final, f))
    assert set(res.final.unique().tolist()) <= {-1.0, 1.0}
    assert res.sweeps < 50  # converged: every unit is where the rule puts it
    for i in range(40):
        field = local_field(patterns, res.final, i, f)
        assert torch.all((field == 0) | (torch.sign(field) == res.final[:, i]))


def test_stored_patterns_are_fixed_points_at_low_load() -> None:
    patterns = torch.randint(0, 2, (5, 100), generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    res = recall(patterns, patterns.clone(), 2)
    assert torch.equal(res.final, patterns) and res.sweeps == 1


def test_higher_order_stores_more_than_the_hopfield_network() -> None:
    rows = {(r["n"], r["K"]): r for r in capacity_table(100, [50], [2, 3], n_probes=10, seed=0)}
    assert rows[(2, 50)]["recovered (%)"] < 50  # K/N = 0.5, far above the ~0.14 N of n = 2
    assert rows[(3, 50)]["recovered (%)"] == 100


def test_bad_arguments_are_refused_by_name() -> None:
    p = torch.ones(3, 5)
    with pytest.raises(ParameterError, match="'F'"):
        recall(p, p, 2, F="cubic")
    with pytest.raises(ParameterError, match="'n'"):
        recall(p, p, 0)
    with pytest.raises(ValueError, match="share N"):
        recall(p, torch.ones(2, 4), 2)
    with pytest.raises(ParameterError, match="'flip'"):
        capacity_table(10, [2], [2], flip=0.9)
    with pytest.raises(ParameterError, match="'n_images'"):
        SlidesConfig.cpu(n_images=0)


@pytest.mark.slow
def test_cached_slides_table_matches_the_code(mnist) -> None:
    if SLIDES_TRANSFER not in artifacts.read_manifest(artifacts_dir())["artifacts"]:
        pytest.skip("no cached slides table (python -m dam_utils.slides)")
    cached = load_transfer_results(name=SLIDES_TRANSFER)  # refused if a model changed
    assert cached.n_values == list(SLIDES_N) and cached.n_images == 10000
    models = {n: artifacts.load_book_model(n)[0] for n in SLIDES_N}
    check = recheck_transfer(cached, models, mnist, n_sample=RECHECK_IMAGES, seed=0)
    assert check["disagree_fraction"] <= RECHECK_TOLERANCE, check
