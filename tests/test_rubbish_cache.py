"""Chapter 2's cached descents: what the shipped code makes from the committed models, and refused once stale."""

from __future__ import annotations

import copy
import json

import pytest

from dam_utils import artifacts, rubbish_cache
from dam_utils.results_cache import StaleResultError, load_result

#: images re-descended per cached model (its first noise image, deformed into every class)
RECHECK = 10


@pytest.fixture(scope="module")
def cached() -> tuple:
    return rubbish_cache.load()


def test_every_committed_model_of_chapter_2_is_cached(cached) -> None:
    runs, doc = cached
    manifest = artifacts.read_manifest()
    want = {(rubbish_cache.BOOK, n) for n in rubbish_cache.N_VALUES}
    want |= {(t, int(n)) for t in rubbish_cache.ABLATIONS for n in manifest["ablation_models"][t]}
    assert set(runs) == want
    for r in runs.values():
        assert len(r.target) == 10 * doc["config"]["n_seeds"] and r.images.abs().max() <= 1
        assert r.summary()["images"] == len(r.target)


#: every cached model (the large-n descents run to 1500 steps: the slowest part of this file)
RECHECKED = [(t, n) for t in (rubbish_cache.BOOK, *rubbish_cache.ABLATIONS) for n in rubbish_cache.N_VALUES]


@pytest.mark.slow
@pytest.mark.parametrize("key", RECHECKED, ids=[f"{t}-n{n}" for t, n in RECHECKED])
def test_cached_descents_are_what_the_code_makes(cached, key: tuple[str, int]) -> None:
    """The model's first noise image, descended again from its cached start into all ten classes (one batch of
    10 instead of 40): the same stopping status and the same image to 0.1 in a pixel for at least 7 of the 10.
    Long float32 descents are sensitive to the order of additions: re-run here in a batch of 10, one image of
    40 may stop one step earlier and one may wander by 0.35 near the step limit (large n); a cache made with
    another model or configuration disagrees on every image."""
    runs, _ = cached
    check = rubbish_cache.recheck(runs[key], rubbish_cache.models([key[1]], [key[0]])[key][0], RECHECK)
    agree = check["same_status"] & (check["max_abs"] <= 0.1)
    assert int(agree.sum()) >= RECHECK - 3, f"{key}: {check}"


def test_a_changed_model_makes_the_cache_stale(cached, tmp_path) -> None:
    _, doc = cached
    manifest = copy.deepcopy(artifacts.read_manifest())
    name = manifest["ablation_models"]["p=0.9"]["30"]
    manifest["artifacts"][name]["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StaleResultError, match=r"p=0\.9 n=30"):
        rubbish_cache.check_models(doc, root=tmp_path)
    rubbish_cache.check_models(doc)  # the committed models themselves pass


def test_the_cache_serves_only_the_run_it_holds(cached) -> None:
    doc, _ = load_result(rubbish_cache.CH2, check_models=False)
    n_seeds = doc["config"]["n_seeds"]
    assert rubbish_cache.covers(doc, [2, 30], n_seeds, "cpu", None, trained_here=False)
    assert not rubbish_cache.covers(doc, [2], n_seeds, "cpu", 0, trained_here=True)
    assert not rubbish_cache.covers(doc, [2], n_seeds + 1, "cpu", 0, trained_here=False)
    assert not rubbish_cache.covers(doc, [2], n_seeds, "cpu", 1, trained_here=False)
    assert not rubbish_cache.covers(doc, [2, 8], n_seeds, "cpu", 0, trained_here=False)
    assert not rubbish_cache.covers(doc, [2], n_seeds, "paper", 0, trained_here=False)
