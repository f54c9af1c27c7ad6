"""Appendix C: Musunuru et al. (seed 004) end to end. The dense network and the draws of adversarial images loaded
from their caches or computed here, and the analyses the appendix shows: the associative memories and their health
(E2), the energy landscapes' data, the document's one number and its companions (E3), the equioutput symmetries of
the dense net (E4a), the cone-order check (E4b), the same transformations on the Hopfield matrix (E5), and the
document's claims as verdicts. Every threshold of a verdict is a constant here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import paper
from .artifacts import load_history
from .claims import Verdict
from .data import Dataset, load_mnist
from .dense_net import (
    DenseConfig,
    DenseNet,
    canonicalise,
    committed_dense,
    initial_state,
    load_dense,
    permuted_copies,
    swap_weights,
    train_dense,
    transform_hidden,
)
from .hopfield import IterativeConfig, basin_sizes, binarise, label_of, pattern_health, recall, transform_memory
from .lbfgs import LBFGSConfig
from .musunuru import (
    RULES,
    DrawsConfig,
    build_memory,
    load_copies,
    load_draws,
    memory_labels,
    prototypes,
    run_draws,
)

__all__ = [
    "SETTINGS",
    "claim_verdicts",
    "committed_mean",
    "cone_rows",
    "dense_symmetries",
    "draw_rows",
    "hopfield_transforms",
    "memory_rows",
    "obtain_copies",
    "obtain_dense",
    "obtain_draws",
    "readings",
    "recall_verdicts",
    "sensitivity_rows",
    "summary",
]

#: "Mostly not misclassified": the memory gets at most this share (%) of the adversarials wrong.
ROBUST_MAX_WRONG = 50.0
#: A reading of the document's 0.7 agrees with ours when ours is within this fraction of its value.
READING_TOL = 0.25
#: "About its clean error": the adversarial error exceeds the error on the originals by at most this (points).
CLEAN_GAP_MAX = 5.0
#: (prototypes per digit, margin kappa) of the iterative memories compared in the chapter; (1, 0) is the main one
#: (kappa = 0: the document's "lowest in energy"; 2 and 5 per digit: the reading notes' 20 and 50 patterns).
SETTINGS = ((1, 0.0), (1, 1.0), (1, 5.0), (2, 0.0), (5, 0.0))
#: Output differences at or below this count as "unchanged" (float32 rounding).
EXACT_TOL = 1e-5


def obtain_dense(profile: str, recompute: bool, data: Dataset
                 ) -> tuple[DenseNet, dict[str, Any], list[dict[str, Any]], str]:
    """The dense net of ``profile`` from the canonical start: committed, or trained here (``recompute`` or the
    smoke profile). Returns the net, its record (manifest entry, or config / test error / wall time), its
    training history (:func:`~dam_utils.dense_net.train_dense`) and where it came from."""
    if recompute or profile == "smoke":
        cfg = DenseConfig.preset(profile)
        net, history, wall = train_dense(cfg, data, canonicalise(initial_state(cfg)), log_every=100, progress=False)
        rec = {"config": cfg.to_dict(), "wall_time_s": round(wall, 1), "test_error": history[-1]["test_error"]}
        return net, rec, history, "trained here"
    name = committed_dense(profile)
    if name is None:
        raise FileNotFoundError(f"no committed dense network for profile {profile!r}: run `python -m "
                                f"dam_utils.dense_net --profile {profile}`, or the appendix with recompute=True")
    net, e = load_dense(name)
    return net, e, load_history(name), "committed"


def obtain_draws(net: DenseNet, profile: str, here: bool, data: Dataset) -> tuple[dict[str, np.ndarray], str]:
    """The draws of adversarial images: computed for ``net`` when it was trained ``here``, else the cache."""
    if here:
        return run_draws(net, data, DrawsConfig.preset(profile), LBFGSConfig.preset(profile), progress=False), \
            "computed here"
    return load_draws()[0], "artifacts/results/"


def obtain_copies(rec: Mapping[str, Any], profile: str, here: bool, data: Dataset
                  ) -> tuple[dict[str, Any], str]:
    """The permuted-copies check of the cone claim (and its ``epochs``): computed here with the net's config, or
    the cache."""
    if here:
        cfg = DrawsConfig.preset(profile)
        out = permuted_copies(DenseConfig(**{**rec["config"], "epochs": cfg.copy_epochs}), data, cfg.copies,
                              progress=False)
        return {**out, "epochs": cfg.copy_epochs}, "computed here"
    arrays, doc = load_copies()
    return {**arrays, "reference_inversions_bias": doc["reference_inversions_bias"],
            "epochs": doc["config"]["dense"]["epochs"]}, "artifacts/results/"


def memory_rows(xi: torch.Tensor, labels: torch.Tensor, data: Dataset, icfg: IterativeConfig, n_test: int = 1000,
                seed: int = 0, basin_trials: int = 5) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor],
                                                                list[dict[str, Any]]]:
    """E2's quantitative companion, for every rule (:data:`~dam_utils.musunuru.RULES`): stored patterns that are
    fixed points and strict local minima, unstable bits, basin sizes (median and smallest), the margin of the
    one-flip neighbours, the clean recall accuracy on ``n_test`` random test digits, and how many of those
    recalls end exactly in a stored pattern (the rest end in spurious states). Returns the rows, the
    weight matrices by rule, and the iterative rule's history."""
    x = (data.x_test + 1) / 2
    pick = torch.from_numpy(np.random.default_rng(seed).choice(len(x), n_test, replace=False))
    rows, ws, hist = [], {}, []
    for rule in RULES:
        w, h = build_memory(xi, rule, icfg)
        ws[rule] = w
        hist = h or hist
        ph = pattern_health(w, xi)
        basins = basin_sizes(w, xi, trials=basin_trials, seed=seed)
        pred, states = memory_labels(w, xi, labels, x[pick], seed=seed)
        stored = (states[:, None, :] == xi[None].to(states.dtype)).all(2).any(1)  # (B,) ended in a pattern
        rows.append({"rule": rule, "fixed points": f"{int(ph['fixed'].sum())}/{len(xi)}",
                     "strict minima": f"{int(ph['strict_min'].sum())}/{len(xi)}",
                     "unstable bits (mean)": float(ph["unstable"].double().mean()),
                     "basin, median (bits)": float(basins.double().median()),
                     "basin, smallest (bits)": int(basins.min()),
                     "neighbour minus pattern, min": float((ph["neighbour_min"] - ph["energy"]).min()),
                     "clean test digits right (%)": 100.0 * float((pred == data.y_test[pick]).double().mean()),
                     "recalls ending in a stored pattern (%)": 100.0 * float(stored.double().mean())})
    return rows, ws, hist


def sensitivity_rows(data: Dataset, draws: Mapping[str, np.ndarray], net: DenseNet, icfg: IterativeConfig,
                     settings: Sequence[tuple[int, float]] = SETTINGS, n_test: int = 1000, seed: int = 0
                     ) -> list[dict[str, Any]]:
    """The iterative memory under the two choices the document leaves open that matter: prototypes per digit
    and the margin kappa. For each (per_class, kappa): the iterations to converge, the strict minima, the
    smallest margin of a one-flip neighbour, the clean accuracy on ``n_test`` random test digits, and the means
    over the draws of :func:`draw_rows`' main counts."""
    x = (data.x_test + 1) / 2
    pick = torch.from_numpy(np.random.default_rng(seed).choice(len(x), n_test, replace=False))
    rows = []
    for per_class, kappa in settings:
        xi, labels = prototypes(data, per_class)
        w, hist = build_memory(xi, "iterative", IterativeConfig(**{**icfg.to_dict(), "kappa": kappa}))
        ph = pattern_health(w, xi)
        pred, _ = memory_labels(w, xi, labels, x[pick], seed=seed)
        mean = summary(draw_rows(draws, w, xi, labels, net, data))
        rows.append({"patterns": len(xi), "κ": kappa, "iterations": len(hist),
                     "strict minima": f"{int(ph['strict_min'].sum())}/{len(xi)}",
                     "neighbour minus pattern, min": float((ph["neighbour_min"] - ph["energy"]).min()),
                     "clean test digits right (%)": 100.0 * float((pred == data.y_test[pick]).double().mean()),
                     "wrong on adversarials (mean)": mean["memory wrong on adversarials"],
                     "wrong on originals (mean)": mean["memory wrong on originals"],
                     "binary-space: wrong (mean)": mean["binary-space: memory wrong"]})
    return rows


def draw_rows(draws: Mapping[str, np.ndarray], w: torch.Tensor, xi: torch.Tensor, labels: torch.Tensor,
              net: DenseNet, data: Dataset) -> list[dict[str, Any]]:
    """E3 per draw: the memory's errors on the L-BFGS adversarials (count and fraction: the document's number),
    on their originals, on the adversarials among the originals it got right (conditional); the mean Hamming
    distance after binarisation and the adversarials that binarise to their original exactly; the dense net on
    the binarised adversarials (does the threshold alone undo the attack?); the memory on the FGSM adversarials
    and on the binary-space ones. Every image of every draw is recalled in one batch per kind."""
    y = torch.from_numpy(draws["label"])
    x, xa = (data.x_test[draws["index"]] + 1) / 2, torch.from_numpy(draws["x_adv"])  # (R * n, 784) in [0, 1]
    xf, xb = torch.from_numpy(draws["x_fgsm"]), torch.from_numpy(draws["x_bin_adv"]).float()
    po, pa, pf, pb = (memory_labels(w, xi, labels, v)[0] for v in (x, xa, xf, xb))
    ham = (binarise(x) != binarise(xa)).sum(1)
    net_bin = net.predict((binarise(xa) + 1) / 2) == y
    fooled = torch.from_numpy(~np.isnan(draws["fgsm_eps"]))
    bin_ok = net.predict(xb) != y  # the binary-space attack fooled the net
    rows = []
    for r in np.unique(draws["draw"]):
        j = torch.from_numpy(draws["draw"] == r)
        wa, wo = (pa != y) & j, (po != y) & j
        rows.append({"draw": int(r), "images": int(j.sum()),
                     "memory wrong on adversarials": int(wa.sum()),
                     "fraction": int(wa.sum()) / int(j.sum()),
                     "memory wrong on originals": int(wo.sum()),
                     "wrong among originals right": int((wa & ~wo).sum()),
                     "Hamming (mean bits)": float(ham[j].double().mean()),
                     "erased by the threshold": int((ham[j] == 0).sum()),
                     "dense net right on binarised adversarials": int((net_bin & j).sum()),
                     "FGSM: fooled the net": int((fooled & j).sum()),
                     "FGSM: memory wrong": int(((pf != y) & fooled & j).sum()),
                     "binary-space: fooled the net": int((bin_ok & j).sum()),
                     "binary-space: memory wrong": int(((pb != y) & bin_ok & j).sum())})
    return rows


def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Means over the draws of every numeric column of :func:`draw_rows`, and the sample standard deviation of the
    count of adversarials the memory gets wrong."""
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "draw"}
    counts = [r["memory wrong on adversarials"] for r in rows]
    out["sd of the count"] = float(np.std(counts, ddof=1)) if len(counts) > 1 else float("nan")
    return out


def readings(mean: Mapping[str, float]) -> list[Verdict]:
    """The document's "0.7" under each reading (reading notes, B.3) beside the same quantity of ours (means over
    the draws): a mean count of images, a fraction, a count of 7, a percentage. A reading agrees when ours is
    within :data:`READING_TOL` of the document's value. The first row checks the number of images, 40."""
    n, count = mean["images"], mean["memory wrong on adversarials"]
    v, tol = paper.MUSUNURU_WRONG, f"within ± {100 * READING_TOL:g} %"

    def agree(ours: float, ref: float) -> str:
        return "holds" if abs(ours - ref) <= READING_TOL * ref else "does not hold"

    out = [Verdict("adversarial images of the dense net per draw", n, paper.MUSUNURU_N_ADV, "= 40",
                   "holds" if n == paper.MUSUNURU_N_ADV else "does not hold", "")]
    for claim, ours, ref, unit in (("0.7 read as the mean count the memory gets wrong (of 40)", count, v, ""),
                                   ("0.7 read as the fraction of the 40", count / n, v, ""),
                                   ("0.7 read as a typo for 7 images (of 40)", count, 10 * v, ""),
                                   ("0.7 read as 0.7 % of the images", 100 * count / n, v, "%")):
        out.append(Verdict(claim, ours, ref, tol, agree(ours, ref), unit))
    return out


def recall_verdicts(mean: Mapping[str, float]) -> list[Verdict]:
    """The document's claims about recall (reading notes, B.5, claims 1-3, 11): the memory mostly labels the
    dense net's adversarials right, about as often as clean digits, and other attacks do not work either."""
    n = mean["images"]
    wrong = 100 * mean["memory wrong on adversarials"] / n
    gap = wrong - 100 * mean["memory wrong on originals"] / n
    fg, bi = mean["FGSM: fooled the net"], mean["binary-space: fooled the net"]
    other = float(np.nanmax([100 * mean["FGSM: memory wrong"] / fg if fg else math.nan,
                              100 * mean["binary-space: memory wrong"] / bi if bi else math.nan]))
    return [
        Verdict("the memory mostly labels the dense net's adversarials right (share wrong)", wrong,
                f"{paper.MUSUNURU_WRONG:g} of {paper.MUSUNURU_N_ADV}", f"<= {ROBUST_MAX_WRONG:g} %",
                "holds" if wrong <= ROBUST_MAX_WRONG else "does not hold", "%"),
        Verdict("... and about as often as on the clean originals (extra error)", gap, None,
                f"<= {CLEAN_GAP_MAX:g} points", "holds" if gap <= CLEAN_GAP_MAX else "does not hold", "pp"),
        Verdict("most attacks do not work on it: the worst of FGSM and a binary-space attack (share wrong)", other,
                None, f"<= {ROBUST_MAX_WRONG:g} %", "holds" if other <= ROBUST_MAX_WRONG else "does not hold", "%"),
    ]


def committed_mean(root: Path | None = None) -> dict[str, float]:
    """:func:`summary` of the committed draws, scored by the iterative memory (cpu preset): what the scorecard
    shows. Raises the results cache's errors when the draws are missing, modified or stale."""
    draws, doc = load_draws(root)
    net, _ = load_dense(doc["config"]["models"]["dense"]["name"], root)
    data = load_mnist()
    xi, labels = prototypes(data)
    w, _ = build_memory(xi, "iterative", IterativeConfig())
    return summary(draw_rows(draws, w, xi, labels, net, data))


def cone_rows(history: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """E4b from a training history (:func:`~dam_utils.dense_net.train_dense`): one row per epoch (inverted pairs
    and sign changes of each key since the start, out of H (H - 1) / 2 pairs and H units), and a summary (the
    last row, the largest counts at any checkpoint, and the first checkpoint with an inversion)."""
    h = len(history[0]["keys_bias"])
    rows = [{"epoch": r["epoch"], "step": r["step"], "test error (%)": r["test_error"],
             "bias: inverted pairs": r["bias"]["inversions"], "bias: sign changes": r["bias"]["sign_changes"],
             "norm: inverted pairs": r["norm"]["inversions"]} for r in history if "test_error" in r]
    first = next((r["step"] for r in history if r["bias"]["inversions"] or r["norm"]["inversions"]), None)
    out = {"bias": history[-1]["bias"], "norm": history[-1]["norm"], "pairs": h * (h - 1) // 2, "units": h,
           "max_bias_inversions": max(r["bias"]["inversions"] for r in history),
           "max_norm_inversions": max(r["norm"]["inversions"] for r in history),
           "max_sign_changes": max(r["bias"]["sign_changes"] for r in history), "first_step": first}
    return rows, out


def dense_symmetries(net: DenseNet, relu: DenseNet, x: torch.Tensor, draws: int = 100, seed: int = 0
                     ) -> list[dict[str, Any]]:
    """E4a on images ``x`` (B, 784) in [0, 1]: for ``draws`` random (P, D), the largest output change and the
    predictions that change, for permutations and sign flips of tanh units, the same two for ReLU units, and swaps
    of two single incoming weights (one pair of units, one pixel near the centre, which every digit uses)."""
    gen = torch.Generator().manual_seed(seed)
    h = net.fc1.out_features

    def outs(model: DenseNet, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        other = DenseNet(h, model.activation)
        other.load_state_dict(dict(state))
        with torch.no_grad():
            return other(x)

    cases = {"permutation (tanh)": (net, "perm"), "sign flips (tanh)": (net, "signs"),
             "permutation and sign flips (tanh)": (net, "both"), "permutation (ReLU)": (relu, "perm"),
             "sign flips (ReLU)": (relu, "signs"), "swap of two single weights (tanh)": (net, "swap")}
    rows = []
    for name, (model, kind) in cases.items():
        ref, state = outs(model, model.state_dict()), model.state_dict()
        worst, changed = 0.0, 0
        for _ in range(draws):
            perm = torch.randperm(h, generator=gen)
            signs = torch.where(torch.rand(h, generator=gen) < 0.5, -1.0, 1.0)
            if kind == "swap":
                a, b = perm[:2].tolist()
                pixel = 14 * 28 + 14
                new = swap_weights(state, (a, pixel), (b, pixel))
            else:
                new = transform_hidden(state, perm if kind in ("perm", "both") else None,
                                       signs if kind in ("signs", "both") else None)
            out = outs(model, new)
            worst = max(worst, float((out - ref).abs().max()))
            changed += int((out.argmax(1) != ref.argmax(1)).sum())
        rows.append({"transformation": name, "draws": draws, "largest output change": worst,
                     "predictions changed (mean per draw)": changed / draws,
                     "a symmetry": "yes" if worst <= EXACT_TOL else "no"})
    return rows


def hopfield_transforms(w: torch.Tensor, xi: torch.Tensor, labels: torch.Tensor, x01: torch.Tensor, y: torch.Tensor,
                        seed: int = 0, max_sweeps: int = 30) -> list[dict[str, Any]]:
    """E5: the dense net's transformations applied to the memory W, compared with W on images ``x01`` (B, 784):
    stored patterns that stay fixed points, recall accuracy, recalled states identical to W's, and recalls that
    settled within ``max_sweeps`` sweeps (the one-sided P W is not symmetric: it has no energy and can cycle).
    With the pixels kept on their neurons the transformed memory is asked about the original patterns and images;
    when a row moves the inputs too, it gets the moved patterns and images and its final states are moved back."""
    gen = torch.Generator().manual_seed(seed)
    n = w.shape[0]
    perm = torch.randperm(n, generator=gen)
    inv = perm.argsort()
    signs = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    ident = (lambda s: s, lambda s: s)
    moves = {"perm": (lambda s: s[:, perm], lambda s: s[:, inv]), "signs": (lambda s: s * signs, lambda s: s * signs),
             "negate": (lambda s: -s, lambda s: -s)}
    cases = [("P W Pᵀ (neurons permuted)", transform_memory(w, perm=perm), ident, None),
             ("D W D (sign flips)", transform_memory(w, signs=signs), ident, None),
             ("P W (one-sided, as in a dense layer)", transform_memory(w, perm=perm, one_sided=True), ident, None),
             ("P W Pᵀ, inputs permuted and read back", transform_memory(w, perm=perm), moves["perm"], None),
             ("P W Pᵀ, inputs permuted, same visiting order", transform_memory(w, perm=perm), moves["perm"], inv),
             ("D W D, inputs flipped and read back", transform_memory(w, signs=signs), moves["signs"], None),
             ("W, inputs and patterns negated (s → −s)", w, moves["negate"], None)]
    s0 = binarise(x01).double()
    ref, _ = recall(w, s0, max_sweeps, seed=seed)
    rows = []
    for name, m, (fwd, back), relabel in cases:
        s, sweeps = recall(m, fwd(s0), max_sweeps, seed=seed, relabel=relabel)
        pred = label_of(back(s), xi, labels)
        rows.append({"transformation": name,
                     "patterns still fixed": f"{int(pattern_health(m, fwd(xi.double()))['fixed'].sum())}/{len(xi)}",
                     "recall right (%)": 100.0 * float((pred == y).double().mean()),
                     "recalled states identical to W's (%)": 100.0 * float((back(s) == ref).all(1).double().mean()),
                     "settled (%)": 100.0 * float((sweeps <= max_sweeps).double().mean())})
    return rows


def claim_verdicts(mean: Mapping[str, float], memory: Sequence[Mapping[str, Any]], sym: Sequence[Mapping[str, Any]],
                   cone: Mapping[str, Any], copies: Mapping[str, Any], transforms: Sequence[Mapping[str, Any]]
                   ) -> list[Verdict]:
    """The document's claims (reading notes, B.5), each judged on our numbers (``paper``: the document's own
    number where it gives one): :func:`recall_verdicts`, then symmetries, cones, the Hopfield matrix and the
    iterative rule."""
    by_rule = {r["rule"]: r for r in memory}
    sym_by = {r["transformation"]: r for r in sym}
    exact = all(sym_by[k]["a symmetry"] == "yes" for k in ("permutation (tanh)", "sign flips (tanh)",
                                                           "permutation and sign flips (tanh)"))
    tr = {r["transformation"]: r for r in transforms}
    plain = [tr[k]["recalled states identical to W's (%)"] for k in list(tr)[:3]]
    fixed = {r: int(by_rule[r]["strict minima"].split("/")[0]) for r in ("hebbian", "iterative")}
    total = by_rule["iterative"]["strict minima"].split("/")[1]
    micro = "× 10⁻⁶"
    return [
        *recall_verdicts(mean),
        Verdict("permutations and sign flips of tanh units leave the output unchanged (largest change)",
                1e6 * max(sym_by[k]["largest output change"] for k in sym_by if "(tanh)" in k and "swap" not in k),
                None, f"<= {1e6 * EXACT_TOL:g} {micro}", "holds" if exact else "does not hold", micro),
        Verdict("the hidden units keep their order during training (bias key: inverted pairs at the end)",
                cone["bias"]["inversions"], 0, "0 at every checkpoint, either key",
                "holds" if cone["max_bias_inversions"] == 0 and cone["max_norm_inversions"] == 0 else "does not hold",
                ""),
        Verdict("... for every permutation (largest weight difference of a permuted copy)",
                1e6 * float(np.max(copies["max_abs"])), None, "the copies equal the permuted reference",
                "holds" if cone["max_bias_inversions"] == 0 else "moot: the order is not kept", micro),
        Verdict("the transformations give no equal result on the Hopfield matrix (states identical, best)",
                max(plain), None, "< 100 % with pixels fixed", "holds" if max(plain) < 100 else "does not hold", "%"),
        Verdict(f"the iterative rule makes the stored patterns strict minima (after; Hebb: {fixed['hebbian']})",
                fixed["iterative"], None, "more after than before",
                "holds" if fixed["iterative"] > fixed["hebbian"] else "does not hold", f"of {total}"),
    ]
