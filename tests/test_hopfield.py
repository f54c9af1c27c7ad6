"""dam_utils.hopfield: eq. (1) and eq. (2) against loops, the one-flip energy identity, the iterative rule
making every stored pattern a strict local minimum where Hebb's rule fails, the baselines' fixed points, and
recall (energy never rises; a stored pattern is recovered from a few flipped bits)."""

from __future__ import annotations

import pytest
import torch

from dam_utils.hopfield import (
    IterativeConfig,
    basin_sizes,
    binarise,
    energy,
    exact_units,
    hebbian,
    iterative_rule,
    label_of,
    pattern_health,
    pseudo_inverse,
    recall,
    sphere_landscape,
    storkey,
    transform_memory,
)
from dam_utils.params import ParameterError


def _patterns(p: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(p, n, generator=g) > 0.5, 1.0, -1.0).double()


def test_eq1_and_eq2_against_loops() -> None:
    xi = _patterns(3, 7)
    w = hebbian(xi, zero_diagonal=False)
    for i in range(7):
        for j in range(7):
            assert w[i, j] == pytest.approx(sum(float(xi[m, i] * xi[m, j]) for m in range(3)) / 7)
    s = _patterns(2, 7, seed=1)
    e = energy(w, s)
    for b in range(2):
        loop = -0.5 * sum(float(w[i, j] * s[b, i] * s[b, j]) for i in range(7) for j in range(7))
        assert e[b].item() == pytest.approx(loop)
    assert torch.diagonal(hebbian(xi)).abs().max() == 0


def test_one_flip_neighbour_energies() -> None:
    xi = _patterns(4, 20)
    w = hebbian(xi)
    health = pattern_health(w, xi)
    for mu in range(4):
        neigh = xi[mu].repeat(20, 1)
        neigh[torch.arange(20), torch.arange(20)] *= -1  # row i: bit i flipped
        brute = energy(w, neigh)
        assert health["neighbour_min"][mu].item() == pytest.approx(brute.min().item())
        assert health["neighbour_mean"][mu].item() == pytest.approx(brute.mean().item())
        assert bool(health["strict_min"][mu]) == bool((brute > health["energy"][mu]).all())


def test_iterative_rule_makes_strict_minima_where_hebb_fails() -> None:
    xi = _patterns(25, 100)  # load 0.25: far beyond Hebb's capacity
    before = pattern_health(hebbian(xi), xi)
    assert before["unstable"].sum() > 0 and not before["strict_min"].all()
    w, history = iterative_rule(xi, IterativeConfig(samples=100, max_iter=200), keep=(0,))
    after = pattern_health(w, xi)
    assert after["strict_min"].all() and history[-1]["violations"] == 0
    assert torch.equal(history[0]["w"], hebbian(xi))
    assert torch.allclose(w, w.T) and torch.diagonal(w).abs().max() == 0


def test_baselines_store_their_patterns() -> None:
    xi = _patterns(10, 100)
    assert pattern_health(pseudo_inverse(xi), xi)["fixed"].all()
    assert pattern_health(storkey(xi), xi)["fixed"].all()


def test_recall_descends_and_recovers_patterns() -> None:
    xi = _patterns(5, 200)
    w = hebbian(xi)
    g = torch.Generator().manual_seed(3)
    noisy = xi.repeat(4, 1)
    flip = torch.rand(noisy.shape, generator=g) < 0.1
    noisy[flip] *= -1
    out, sweeps = recall(w, noisy)
    assert (energy(w, out) <= energy(w, noisy) + 1e-9).all()  # asynchronous updates never raise eq. (2)
    assert torch.equal(out, xi.repeat(4, 1)) and (sweeps <= 100).all()
    again, _ = recall(w, out)
    assert torch.equal(again, out)  # a fixed point stays
    labels = torch.arange(5) * 2
    assert torch.equal(label_of(out, xi, labels), labels.repeat(4))
    assert (basin_sizes(w, xi, max_flips=40, step=10, trials=3) >= 10).all()


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="spins"):
        hebbian(torch.rand(3, 10))
    with pytest.raises(ParameterError, match="'threshold'"):
        binarise(torch.rand(2, 4), threshold=2.0)
    with pytest.raises(ParameterError, match="'flips'"):
        IterativeConfig(flips=0)
    assert set(binarise(torch.tensor([[0.2, 0.6]])).flatten().tolist()) == {-1.0, 1.0}


def test_transformations_of_the_memory() -> None:

    xi = _patterns(4, 50)
    w = hebbian(xi)
    g = torch.Generator().manual_seed(2)
    perm = torch.randperm(50, generator=g)
    signs = torch.where(torch.rand(50, generator=g) > 0.5, 1.0, -1.0).double()
    assert torch.allclose(transform_memory(w, perm=perm), hebbian(xi[:, perm]))  # P W P^T stores P xi
    assert torch.allclose(transform_memory(w, signs=signs), hebbian(xi * signs))  # D W D stores D xi
    one = transform_memory(w, perm=perm, one_sided=True)
    assert not torch.allclose(one, one.T)  # P W is no longer symmetric
    assert torch.allclose(energy(w, xi), energy(w, -xi))  # the trivial symmetry E(s) = E(-s)
    # The transformed memory holds the transformed patterns as fixed points.
    assert pattern_health(transform_memory(w, perm=perm), xi[:, perm])["fixed"].all()


def test_recall_commutes_with_the_symmetries_of_the_memory() -> None:
    """P W P^T with permuted inputs, visiting the same units in the same order, and D W D with flipped inputs
    recall exactly the transformed states. (W scaled to integers: sums of its entries are then exact in any
    order, so a tie h_i = 0 stays a tie after the units are permuted.)"""
    xi = _patterns(6, 60, seed=4)
    w = hebbian(xi) * 60
    g = torch.Generator().manual_seed(5)
    s0 = torch.where(torch.rand(40, 60, generator=g) > 0.5, 1.0, -1.0).double()
    ref, sweeps = recall(w, s0, seed=7)
    perm = torch.randperm(60, generator=g)
    signs = torch.where(torch.rand(60, generator=g) > 0.5, 1.0, -1.0).double()
    got, got_sweeps = recall(transform_memory(w, perm=perm), s0[:, perm], seed=7, relabel=perm.argsort())
    assert torch.equal(got, ref[:, perm]) and torch.equal(got_sweeps, sweeps)
    flipped, _ = recall(transform_memory(w, signs=signs), s0 * signs, seed=7)
    assert torch.equal(flipped, ref * signs)
    neg, _ = recall(w, -s0, seed=7)
    assert torch.equal(neg, -ref)


def test_sphere_landscape_marks_the_basis_states() -> None:
    xi = _patterns(3, 40, seed=6)
    w = hebbian(xi)
    land = sphere_landscape(w, xi, n_theta=30, n_phi=60)
    assert land["energy"].shape == (30, 60) and land["theta"].shape == (30,) and land["phi"].shape == (60,)
    assert torch.allclose(land["coords"].norm(dim=1), torch.ones(3, dtype=torch.float64))
    u, _ = torch.linalg.qr(xi.T)
    # the direction of each basis state maps back to that state (up to the frame's signs): its energy is eq. (2)
    for c, x in zip(land["coords"], xi, strict=True):
        s = torch.sign(u @ c)
        assert torch.equal(s, x) or torch.equal(s, -x)
    for i, j in ((3, 7), (15, 40), (29, 59)):  # any grid point: the energy (eq. 2) of sign(U u(theta, phi))
        t, f = land["theta"][i], land["phi"][j]
        s = torch.sign(u @ torch.stack([t.sin() * f.cos(), t.sin() * f.sin(), t.cos()]))
        s[s == 0] = 1.0
        assert torch.isclose(land["energy"][i, j], energy(w, s[None])[0])


def test_ties_are_exact_so_recall_is_the_same_on_every_machine() -> None:
    """W = xi^T xi / N is a multiple of 1/N, so h = W s is one too: in those units (``exact_units``) every sum is an
    exact integer and a tie h_i = 0 keeps its unit, as the rule says. Summed in units of 1, float64 rounding turns
    most such ties into +-1e-17, whose sign depends on the order of additions (the CPU's BLAS): the unit then flips
    on one machine and not on another. Here the first unit a sweep visits sits at such a tie, with the float sum's
    sign against its state: recall keeps it."""
    g = torch.Generator().manual_seed(0)
    xi = torch.where(torch.rand(10, 784, generator=g) < 0.3, 1.0, -1.0)  # an even number of patterns: h can be 0
    w = hebbian(xi)
    units = exact_units(w)
    assert torch.equal(units, (xi.T @ xi).fill_diagonal_(0.0))  # integers: N W
    first = int(torch.randperm(784, generator=torch.Generator().manual_seed(0))[0])  # recall(seed=0)'s first unit
    s = torch.where(torch.rand(2000, 784, generator=g) < 0.5, 1.0, -1.0).double()
    h_exact, h_float = (s @ units)[:, first], (s @ w)[:, first]
    trap = (h_exact == 0) & (torch.sign(h_float) == -s[:, first])  # a tie that rounding would break by flipping
    assert trap.any(), "no tie broken by rounding among the random states"
    s0 = s[trap][:1]
    out, _ = recall(w, s0, max_sweeps=1, seed=0)
    assert out[0, first] == s0[0, first]
    # the iterative rule keeps W a multiple of 1/N too (eta = 1), so its memories get exact ties as well
    w_it, _ = iterative_rule(xi, IterativeConfig.preset("smoke"))
    assert torch.equal(exact_units(w_it), (w_it * 784).round())
