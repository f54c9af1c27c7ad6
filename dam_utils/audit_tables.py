"""Tables, checks, verdicts and figures of chapter 7, from :class:`~dam_utils.audit.AuditResults`; formats, counts
and draws, never attacks.

* :func:`curve_table`: robust accuracy against eps (FGSM, PGD, AutoAttack) per model and norm; :func:`plot_curves`.
* :func:`checklist`: the gradient-masking checklist (Carlini et al. 2019, section 3.3 / Athalye et al. 2018), one
  row per check and norm, each with the numbers it compared and whether it passed.
* :func:`verdicts`: one of :data:`dam_utils.claims.AUDIT_VERDICTS` per model (:func:`dam_utils.claims.audit_verdict`).
* :func:`distance_rows`: median minimal L2 distances (DeepFool, FAB, HopSkipJump) beside chapter 3's boundary distance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from . import claims
from .audit import BASELINE, CHECK_EPS, EPS, UNBOUNDED_EPS, AuditResults
from .audit_attacks import MINIMAL, NORMS, STANDARD
from .transfer import TransferResult

__all__ = ["CHECKS", "boundary_distances", "checklist", "curve_table", "distance_rows", "masking", "plot_curves",
           "robust_at_check", "transfer_rows", "verdicts", "warning_rows"]

#: The checks, in the chapter's order; the ones whose failure means masking are marked True.
CHECKS = {
    "unbounded eps reaches 100 %": True,
    "iterative beats single-step": True,
    "more iterations and restarts help little": True,
    "gradient-free no stronger than gradients": True,
    "white-box at least as strong as transfer": True,
    "logits D at least as strong as tanh(D)": False,
    "AutoAttack raised no warning": True,
}
_MASKING_WORDS = ("zero gradient", "Square Attack has decreased", "randomized defense", "dynamic defense")


def _pct(mask: np.ndarray) -> float:
    return 100.0 * float(np.mean(mask))


def robust_at_check(res: AuditResults, key: str, norm: str) -> float:
    """AutoAttack's full standard sequence at the checklist's eps: robust accuracy (percent, ``n_check`` images)."""
    return _pct(res.check[key][norm]["aa_broken_by"] == len(STANDARD))


def curve_table(res: AuditResults, norm: str) -> dict[str, dict[str, list[float]]]:
    """``{model: {"fgsm" | "pgd" | "autoattack": robust accuracy per eps of EPS[norm]}}`` (percent)."""
    i = NORMS.index(norm)
    return {k: {a: [float(v) for v in res.robust(a)[m, i]] for a in ("fgsm", "pgd", "autoattack")}
            for m, k in enumerate(res.keys)}


def _transfer_robust(c: Mapping[str, Any]) -> float:
    """Percent of the checklist's images that every transfer source together leaves correct."""
    return _pct(~np.any(np.stack(list(c["transfer_fooled"].values())), 0))


def _row(check: str, norm: str, measured: str, ok: bool) -> dict[str, Any]:
    return {"check": check, "norm": norm, "measured": measured, "passed": bool(ok), "masking_if_failed": CHECKS[check]}


def checklist(res: AuditResults, key: str) -> list[dict[str, Any]]:
    """The checklist for model ``key``: one row per check and norm (:data:`CHECKS`)."""
    tol, m, rows = claims.AUDIT_TOL_PP, res.keys.index(key), []
    robust = len(STANDARD)
    for i, norm in enumerate(NORMS):
        c, eps = res.check[key][norm], CHECK_EPS[norm]
        aa_rob = c["aa_broken_by"] == robust
        unb = _pct(c["unbounded_fooled"])
        rows.append(_row("unbounded eps reaches 100 %", norm,
                         f"{unb:.1f} % fooled at ε = {UNBOUNDED_EPS[norm]:g}", unb == 100.0))
        Ni = res.fooled["pgd"].shape[-1]
        fg = 100.0 * (~res.fooled["fgsm"][m, i, :, :Ni]).mean(-1)
        pg, aa = res.robust("pgd")[m, i], res.robust("autoattack")[m, i]
        worst = float(np.max(np.minimum(pg, aa) - fg))
        rows.append(_row("iterative beats single-step", norm,
                         f"FGSM {fg[1]:.1f} %, PGD {pg[1]:.1f} %, APGD {aa[1]:.1f} % at ε = {EPS[norm][1]:g}; "
                         f"worst gap over the ε grid {worst:+.1f} pp", worst <= tol))
        gain = _pct(aa_rob) - _pct(aa_rob & ~c["long_fooled"])
        rows.append(_row("more iterations and restarts help little", norm,
                         f"AutoAttack {_pct(aa_rob):.1f} %, then APGD-CE/DLR ×{res.config['audit']['long_restarts']} "
                         f"restarts, {res.config['audit']['long_iter']} its: −{gain:.1f} pp", gain <= tol))
        grad_rob = _pct(c["aa_broken_by"] >= 2)  # robust to APGD-CE and APGD-T
        sq = _pct(~c["square_fooled"])
        text, ok = f"APGD {grad_rob:.1f} %, Square alone {sq:.1f} %", sq >= grad_rob - tol
        if norm == "L2":
            Nh = res.distance["hsj"].shape[-1]
            hsj = _pct(res.distance["hsj"][m] > eps)
            g_h = _pct(c["aa_broken_by"][:Nh] >= 2)
            text += f"; on the first {Nh}: APGD {g_h:.1f} %, HopSkipJump {hsj:.1f} %"
            ok = ok and hsj >= g_h - tol
        rows.append(_row("gradient-free no stronger than gradients", norm, text, ok))
        tr, tr_rob = c["transfer_fooled"], _transfer_robust(c)
        best = min(tr, key=lambda s: float(np.mean(~tr[s])))
        rows.append(_row("white-box at least as strong as transfer", norm,
                         f"white-box {_pct(aa_rob):.1f} %, every transfer source together {tr_rob:.1f} % "
                         f"(best single: {best}, {_pct(~tr[best]):.1f} %)", _pct(aa_rob) <= tr_rob + tol))
        lo, th = _pct(~c["apgd_ce_fooled"]), _pct(~c["apgd_ce_tanh_fooled"])
        rows.append(_row("logits D at least as strong as tanh(D)", norm,
                         f"APGD-CE on D {lo:.1f} %, on tanh(D) {th:.1f} % (PGD on tanh(D) "
                         f"{_pct(~c['pgd_tanh_fooled']):.1f} %); zero CE gradient on D "
                         f"{c['zero_grad_logits_pct']:.0f} %, on tanh(D) {c['zero_grad_tanh_pct']:.0f} %",
                         lo <= th + tol))
        bad = {w: n for w, n in res.warnings[key][norm].items() if any(s in w for s in _MASKING_WORDS)}
        rows.append(_row("AutoAttack raised no warning", norm,
                         "; ".join(f"{w} (×{n})" for w, n in bad.items()) or "none", not bad))
    order = list(CHECKS)
    return sorted(rows, key=lambda r: (order.index(r["check"]), NORMS.index(r["norm"])))


def masking(res: AuditResults, key: str) -> list[str]:
    """The failed checks of ``key`` whose failure means gradient masking ("check (norm)")."""
    return [f"{r['check']} ({r['norm']})" for r in checklist(res, key) if r["masking_if_failed"] and not r["passed"]]


def verdicts(res: AuditResults) -> dict[str, dict[str, Any]]:
    """Per model: the verdict and the numbers behind it (robust accuracy under AutoAttack and under transfer at the
    checklist's eps per norm, the baseline's, the failed masking checks)."""
    out = {}
    for k in res.keys:
        wb = {nm: robust_at_check(res, k, nm) for nm in NORMS}
        base = {nm: robust_at_check(res, BASELINE, nm) for nm in NORMS}
        tr = {nm: _transfer_robust(res.check[k][nm]) for nm in NORMS}
        failed = masking(res, k)
        verdict = claims.audit_verdict(bool(failed), [wb[nm] - base[nm] for nm in NORMS],
                                       [tr[nm] - wb[nm] for nm in NORMS])
        out[k] = {"verdict": verdict, "whitebox": wb, "baseline": base, "transfer": tr, "masking_checks": failed}
    return out


def distance_rows(res: AuditResults, boundary_distance: Mapping[str, float]) -> list[dict[str, Any]]:
    """Median minimal L2 distance per model and attack ([0, 1] units) beside chapter 3's median boundary
    distance (``boundary_distance[key]``, given in the book's [-1, 1] units and halved here)."""
    rows = []
    for m, k in enumerate(res.keys):
        row: dict[str, Any] = {"model": k}
        for a in MINIMAL:
            d = res.distance[a][m]
            row[a] = float(np.median(d))
            row[f"{a} found %"] = _pct(np.isfinite(d))
        b = boundary_distance.get(k)
        row["chapter 3"] = None if b is None else float(b) / 2.0
        rows.append(row)
    return rows


def boundary_distances(fig5: TransferResult, ch5_summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Chapter 3's median boundary distance ([-1, 1] units) per audited model: the DAMs' from chapter 4's cache
    (all 10000 test images), the ReLU network's from chapter 5's."""
    out = {f"DAM n={n}": float(fig5.summaries[n]["median_boundary_distance"]) for n in fig5.n_values}
    out[BASELINE] = float(ch5_summaries[BASELINE]["median_boundary_distance"])
    return out


def transfer_rows(res: AuditResults, fig5: TransferResult, verdict: Mapping[str, Mapping[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Per DAM: its error on the other small-n DAMs' adversarial images (chapter 4's transfer table, the paper's
    evidence), its error under transferred PGD and under AutoAttack at the checklist's eps, and the verdict."""
    small = [n for n in fig5.n_values if n <= claims.SMALL_N_MAX]
    rows = []
    for k in res.keys:
        n = res.info[k]["n"]
        if res.info[k]["family"] != "DAM" or n not in fig5.n_values:
            continue
        gens = [g for g in small if g != n]
        row: dict[str, Any] = {"model": k, "chapter 4: error on small-n sets %":
                               float(np.mean([fig5.cell(g, n) for g in gens])) if gens else None}
        for nm in NORMS:
            row[f"transfer error {nm} %"] = 100.0 - verdict[k]["transfer"][nm]
            row[f"AutoAttack error {nm} %"] = 100.0 - verdict[k]["whitebox"][nm]
        row["verdict"] = verdict[k]["verdict"]
        rows.append(row)
    return rows


def warning_rows(res: AuditResults) -> list[dict[str, Any]]:
    """Every message the libraries emitted, per model and norm, with its count."""
    return [{"model": k, "norm": nm, "message": w, "count": c}
            for k in res.keys for nm in NORMS for w, c in res.warnings[k][nm].items()]


def plot_curves(res: AuditResults) -> Figure:
    """Robust accuracy against eps, one panel per norm: AutoAttack's curve attacks (solid), PGD (dashed), FGSM
    (dotted), one colour per model."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    dams = [k for k in res.keys if k != BASELINE]
    colours = dict(zip(dams, plt.get_cmap("viridis")(np.linspace(0, 0.85, len(dams))), strict=True))
    colours[BASELINE] = "tab:red"
    for ax, norm in zip(axes, NORMS, strict=True):
        tab, eps = curve_table(res, norm), EPS[norm]
        for k in res.keys:
            col = colours[k]
            ax.plot(eps, tab[k]["autoattack"], "-o", color=col, label=k, ms=4)
            ax.plot(eps, tab[k]["pgd"], "--", color=col, lw=1)
            ax.plot(eps, tab[k]["fgsm"], ":", color=col, lw=1)
        ax.axvline(CHECK_EPS[norm], color="0.7", lw=0.8)
        ax.set(xlabel=f"ε ({'L∞' if norm == 'Linf' else 'L2'}, pixels in [0, 1])", title=norm, ylim=(-2, 102))
    axes[0].set_ylabel("robust accuracy (%)")
    axes[1].legend(fontsize=8, title="solid: APGD · dashed: PGD · dotted: FGSM", title_fontsize=7)
    fig.tight_layout()
    return fig
