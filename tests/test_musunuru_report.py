"""dam_utils.musunuru_report: appendix C's analyses on hand-built inputs. Per-draw scores count what they say
(identical "adversarials" are all erased and cost nothing), the readings of 0.7 carry our mean, the cone summary
reads a history, tanh symmetries are exact where ReLU sign flips and single-weight swaps are not, the Hopfield
matrix's symmetries are exact only when the inputs move with the neurons, and the claims come out as verdicts."""

from __future__ import annotations

import numpy as np
import torch

from dam_utils import musunuru_report as report
from dam_utils.dense_net import DenseConfig, DenseNet, train_dense
from dam_utils.hopfield import IterativeConfig, binarise, hebbian
from dam_utils.musunuru import build_memory, prototypes


def _draws(mnist, idx: np.ndarray, draws: int) -> dict[str, np.ndarray]:
    """Draws whose "adversarials" are their originals: nothing is perturbed, FGSM never fooled."""
    x = ((mnist.x_test[idx] + 1) / 2).numpy()
    return {"draw": np.repeat(np.arange(draws), len(idx) // draws), "index": idx,
            "label": mnist.y_test[idx].numpy(), "target": (mnist.y_test[idx].numpy() + 1) % 10, "x_adv": x,
            "x_fgsm": x, "fgsm_eps": np.full(len(idx), np.nan),
            "x_bin_adv": (binarise(torch.from_numpy(x)) > 0).numpy().astype(np.uint8), "flips": np.zeros(len(idx))}


def test_draw_rows_count_what_they_say(mnist) -> None:
    net, _, _ = train_dense(DenseConfig.smoke(hidden=32), mnist, progress=False)
    xi, labels = prototypes(mnist)
    w, _ = build_memory(xi, "pseudo_inverse")
    d = _draws(mnist, np.arange(12), 2)
    rows = report.draw_rows(d, w, xi, labels, net, mnist)
    assert [r["draw"] for r in rows] == [0, 1] and all(r["images"] == 6 for r in rows)
    for r in rows:
        assert r["memory wrong on adversarials"] == r["memory wrong on originals"]  # the same images
        assert r["wrong among originals right"] == 0 and r["fraction"] == r["memory wrong on adversarials"] / 6
        assert r["Hamming (mean bits)"] == 0 and r["erased by the threshold"] == 6
        assert r["FGSM: fooled the net"] == 0 and r["FGSM: memory wrong"] == 0
    y = mnist.y_test[:12]
    on_bin = net.predict((binarise((mnist.x_test[:12] + 1) / 2) + 1) / 2) == y
    assert sum(r["dense net right on binarised adversarials"] for r in rows) == int(on_bin.sum())
    assert sum(r["binary-space: fooled the net"] for r in rows) == int((~on_bin).sum())
    mean = report.summary(rows)
    assert mean["images"] == 6 and mean["memory wrong on adversarials"] == np.mean(
        [r["memory wrong on adversarials"] for r in rows])
    got = {v.claim: v for v in report.readings(mean)}
    assert got["adversarial images of the dense net per draw"].state == "does not hold"  # 6, not 40
    assert got["0.7 read as the fraction of the 40"].ours == mean["memory wrong on adversarials"] / 6
    assert got["0.7 read as a typo for 7 images (of 40)"].paper == 7


def test_cone_rows_summarise_a_history() -> None:
    def row(epoch: int, step: int, inv: int, signs: int, test: bool) -> dict:
        r = {"epoch": epoch, "step": step, "bias": {"inversions": inv, "sign_changes": signs},
             "norm": {"inversions": 0, "sign_changes": 0}, "keys_bias": [0.1, 0.2, 0.3], "keys_norm": [1, 2, 3]}
        return {**r, "test_error": 50.0} if test else r

    rows, s = report.cone_rows([row(0, 0, 0, 0, True), row(1, 5, 0, 0, False), row(1, 10, 2, 1, True),
                                row(2, 20, 1, 0, True)])
    assert [r["step"] for r in rows] == [0, 10, 20]  # epoch ends only
    assert s["pairs"] == 3 and s["units"] == 3 and s["first_step"] == 10
    assert s["max_bias_inversions"] == 2 and s["bias"]["inversions"] == 1 and s["max_sign_changes"] == 1


def test_symmetries_of_the_net_and_of_the_memory() -> None:
    torch.manual_seed(0)
    tanh, relu = DenseNet(16).eval(), DenseNet(16, "relu").eval()
    sym = {r["transformation"]: r for r in report.dense_symmetries(tanh, relu, torch.rand(32, 784), draws=5)}
    assert sym["permutation and sign flips (tanh)"]["a symmetry"] == "yes"
    assert sym["permutation (ReLU)"]["a symmetry"] == "yes" and sym["sign flips (ReLU)"]["a symmetry"] == "no"
    assert sym["swap of two single weights (tanh)"]["a symmetry"] == "no"
    g = torch.Generator().manual_seed(1)
    xi = torch.where(torch.rand(3, 64, generator=g) > 0.5, 1.0, -1.0).double()
    w = hebbian(xi) * 64  # integer weights: no tie depends on the order of a sum
    x01 = torch.rand(50, 64, generator=g)
    y = torch.zeros(50, dtype=torch.long)
    tr = {r["transformation"]: r for r in report.hopfield_transforms(w, xi, torch.arange(3), x01, y)}
    for k in ("P W Pᵀ, inputs permuted, same visiting order", "D W D, inputs flipped and read back",
              "W, inputs and patterns negated (s → −s)"):
        assert tr[k]["recalled states identical to W's (%)"] == 100 and tr[k]["patterns still fixed"] == "3/3"
    assert tr["P W Pᵀ (neurons permuted)"]["patterns still fixed"] != "3/3"
    assert tr["P W Pᵀ (neurons permuted)"]["recalled states identical to W's (%)"] < 100
    memory = [{"rule": "hebbian", "strict minima": "0/3"}, {"rule": "iterative", "strict minima": "3/3"}]
    mean = {"images": 40, "memory wrong on adversarials": 4, "memory wrong on originals": 3, "FGSM: fooled the net": 10,
            "FGSM: memory wrong": 1, "binary-space: fooled the net": 40, "binary-space: memory wrong": 30}
    cone = {"bias": {"inversions": 5}, "max_bias_inversions": 5, "max_norm_inversions": 0}
    copies = {"max_abs": np.array([1e-7])}
    v = report.claim_verdicts(mean, memory, list(sym.values()), cone, copies, list(tr.values()))
    states = [x.state for x in v]
    assert states[0] == "holds" and states[1] == "holds"  # 10 % wrong, 2.5 points above the originals
    assert states[2] == "does not hold"  # 75 % of the binary-space adversarials wrong
    assert states[3] == "holds" and states[4] == "does not hold" and states[5].startswith("moot")
    assert states[6] == "holds" and states[7] == "holds"


def test_sensitivity_rows_keep_their_margin(mnist) -> None:
    """After the iterative rule converges with margin kappa, every one-flip neighbour of every stored pattern is
    more than kappa above it; more prototypes per digit mean more patterns."""
    net, _, _ = train_dense(DenseConfig.smoke(hidden=32), mnist, progress=False)
    rows = report.sensitivity_rows(mnist, _draws(mnist, np.arange(8), 2), net, IterativeConfig(),
                                   settings=((1, 0.0), (1, 5.0), (2, 0.0)), n_test=50)
    assert [r["patterns"] for r in rows] == [10, 10, 20] and [r["κ"] for r in rows] == [0.0, 5.0, 0.0]
    for r in rows:
        assert r["iterations"] < IterativeConfig().max_iter  # converged
        assert r["neighbour minus pattern, min"] > r["κ"] and r["strict minima"] == f"{r['patterns']}/{r['patterns']}"
        assert r["wrong on adversarials (mean)"] == r["wrong on originals (mean)"]  # identical "adversarials"
