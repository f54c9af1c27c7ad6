"""The scorecard: every number of the paper beside ours, with the difference and a pass / deviates mark.

``python -m dam_utils.scorecard`` writes ``book/scorecard.md`` (atomically; untouched when nothing changed,
so Sphinx does not rebuild it) from what is committed under ``artifacts/``: the book models' manifest
entries (clean test errors) and the cached results of chapter 4 (``results/fig5_transfer``,
``fig6_rubbish``, ``fig7_confidence``; :mod:`dam_utils.transfer`). Nothing is computed from the models
here, so it runs in a second. A result that is missing reads "not computed yet"; one computed with other
models than the current book models reads "stale" (recompute with ``make reproduce``). The paper's
numbers come from :mod:`dam_utils.paper` only.

Tolerances (:data:`TOLERANCES`) are fixed here, before looking at the results; a row passes when
``|ours - paper|`` is within its tolerance (or, for beta_sm, the ratio is within a factor).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import paper
from .artifacts import ArtifactError, read_manifest
from .atomic import atomic_write_text
from .paths import REPO_ROOT

__all__ = ["MARKS", "TOLERANCES", "TOLERANCE_TEXT", "build_rows", "main", "render", "write_scorecard"]

#: Tolerances, decided before the comparison.
TOLERANCES: dict[str, float] = {
    # clean test error, percentage points: our cpu models train 180 epochs, the paper's 3000
    "test_error_pp": 0.5,
    # one cell of the Fig. 5 transfer table (and the "97 % correct" claim), percentage points
    "fig5_pp": 10.0,
    # one mean confidence of Fig. 6, percentage points
    "fig6_pp": 10.0,
    # "very confident" in section 5: mean confidence (beta_sm = 3.2) at least this, percent
    "fig6_high": 80.0,
    # fitted beta_sm: ours / paper within this factor (either way)
    "beta_factor": 2.0,
    # beta_sm = 3.2 derived from Z = 0.985: absolute
    "beta_single_abs": 0.05,
    # the talk slides' n = 2 / n = 8 table, percentage points
    "slides_pp": 10.0,
}

#: How each tolerance reads on the page.
TOLERANCE_TEXT: dict[str, str] = {
    "test_error_pp": "clean test error: within ± {} percentage points",
    "fig5_pp": "a cell of the Fig. 5 transfer table: within ± {} percentage points",
    "fig6_pp": "a mean confidence of Fig. 6: within ± {} percentage points",
    "fig6_high": "\"very confident\" (Fig. 6): a mean confidence of at least {} %",
    "beta_factor": "fitted β_sm: within a factor {} of the paper's, either way",
    "beta_single_abs": "β_sm derived from Z = 0.985: within ± {}",
    "slides_pp": "a cell of the talk's n = 2 / n = 8 table: within ± {} percentage points",
}

MARKS = {"pass": "✓ pass", "deviates": "✗ deviates", "missing": "not computed yet", "stale": "stale: recompute"}
SCORECARD = REPO_ROOT / "book" / "scorecard.md"


def _load(fn: Callable[..., Any], root: Path | None) -> tuple[Any, str | None]:
    """(result, None), or (None, "missing" / "stale")."""
    from .transfer import ResultMissingError, StaleResultError

    try:
        return fn(root), None
    except ResultMissingError:
        return None, "missing"
    except StaleResultError:
        return None, "stale"
    except ArtifactError:
        return None, "stale"


def _row(section: str, quantity: str, ref: Any, ours: Any, tol: str, ok: bool | None, unit: str = "%",
         state: str | None = None, delta: float | None = None, digits: int = 2) -> dict[str, str]:
    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
        return str(v)

    if state is not None:
        mark, ours_s, delta_s = MARKS[state], "–", "–"
    else:
        mark = MARKS["pass"] if ok else MARKS["deviates"]
        ours_s = fmt(ours)
        if delta is None and isinstance(ours, (int, float)) and isinstance(ref, (int, float)):
            delta = float(ours) - float(ref)
        delta_s = "–" if delta is None else f"{delta:+.{digits}f}"
    # the paper's value exactly as printed (9.07 stays 9.07), ours to ``digits`` decimals
    ref_s = f"{ref:g}" if isinstance(ref, (int, float)) else str(ref)
    return {"section": section, "quantity": quantity, "paper": ref_s + (f" {unit}" if unit and ref is not None
            and not isinstance(ref, str) else ""), "ours": ours_s + (f" {unit}" if unit and ours_s != "–" else ""),
            "delta": delta_s, "tolerance": tol, "mark": mark}


def build_rows(root: Path | None = None) -> list[dict[str, str]]:
    """Every row of the scorecard, in the paper's order."""
    from .confidence import beta_from_confidence
    from .transfer import load_confidence_results, load_rubbish_results, load_transfer_results

    T = TOLERANCES
    rows: list[dict[str, str]] = []
    manifest = read_manifest(root)
    # --- clean test errors (Fig. 5, right) --------------------------------------------------------------
    ours_err: dict[int, float] = {}
    for n, ref in paper.TEST_ERROR.items():
        name = manifest["book_models"].get(str(n))
        e = manifest["artifacts"].get(name or "", {})
        sec = "Clean test error (Fig. 5, right; section 2)"
        if "test_error" not in e:
            rows.append(_row(sec, f"n = {n}", ref, None, f"± {T['test_error_pp']:g} pp", None, state="missing"))
            continue
        ours_err[n] = float(e["test_error"])
        rows.append(_row(sec, f"n = {n}", ref, ours_err[n], f"± {T['test_error_pp']:g} pp",
                         abs(ours_err[n] - ref) <= T["test_error_pp"]))
    lo, hi = paper.TEST_ERROR_RANGE
    sec = "Clean test error (Fig. 5, right; section 2)"
    if ours_err:
        inside = all(lo - T["test_error_pp"] <= v <= hi + T["test_error_pp"] for v in ours_err.values())
        rows.append(_row(sec, "range over n = 2…30", f"{lo:g}–{hi:g} %", f"{min(ours_err.values()):.2f}–"
                         f"{max(ours_err.values()):.2f}", f"inside ± {T['test_error_pp']:g} pp", inside))
    else:
        rows.append(_row(sec, "range over n = 2…30", f"{lo:g}–{hi:g} %", None, "", None, state="missing"))

    # --- Fig. 5 ----------------------------------------------------------------------------------------
    r5, s5 = _load(load_transfer_results, root)
    sec = "Adversarial transfer, error (Fig. 5)"
    tol5 = f"± {T['fig5_pp']:g} pp"
    rows += _transfer_rows(sec, paper.FIG5_TRANSFER_ERROR, T["fig5_pp"], r5, s5)
    q = "n = 30 classifies correctly the images made by n = 2 and 3"
    if r5 is None or not {2, 3, 30} <= set(r5.n_values):
        rows.append(_row(sec, q, paper.FIG5_CORRECT_N30, None, tol5, None, state=s5 or "missing", digits=1))
    else:
        v = 100.0 - 0.5 * (r5.cell(2, 30) + r5.cell(3, 30))
        rows.append(_row(sec, q, paper.FIG5_CORRECT_N30, v, tol5, abs(v - paper.FIG5_CORRECT_N30) <= T["fig5_pp"],
                         digits=1))

    # --- Fig. 6 ----------------------------------------------------------------------------------------
    r6, s6 = _load(load_rubbish_results, root)
    sec = f"Rubbish transfer, mean confidence at β_sm = {paper.BETA_SM_SINGLE:g} (Fig. 6)"
    tol6 = f"± {T['fig6_pp']:g} pp"
    for (g, t), ref in paper.FIG6_MEAN_CONFIDENCE.items():
        q = f"generated by n = {g}, tested by n = {t}"
        if r6 is None or g not in r6.n_values or t not in r6.n_values:
            rows.append(_row(sec, q, ref, None, tol6, None, state=s6 or "missing", digits=1))
            continue
        v = r6.cell(g, t)
        shown = f"≈ {ref:g} %" if ref == paper.FIG6_CHANCE_CONFIDENCE else ref  # "an average confidence ~ 10 %"
        rows.append(_row(sec, q, shown, v, tol6, abs(v - ref) <= T["fig6_pp"], digits=1, delta=v - ref))
    claims = paper.FIG6_CLAIMS
    if r6 is None or not {2, 3, 20, 30} <= set(r6.n_values):
        for c in claims:
            rows.append(_row(sec, c, "claim", None, "", None, state=s6 or "missing", unit=""))
    else:
        v = r6.cell(2, 3)
        rows.append(_row(sec, claims[0], "claim", v, f"≥ {T['fig6_high']:g} %", v >= T["fig6_high"], digits=1,
                         delta=None))
        worst = max(r6.cell(g, t) for g in (2, 3) for t in (20, 30))
        rows.append(_row(sec, claims[1] + " (largest of the four)", "claim", worst,
                         f"≤ {paper.FIG6_CHANCE_CONFIDENCE + T['fig6_pp']:g} %",
                         worst <= paper.FIG6_CHANCE_CONFIDENCE + T["fig6_pp"], digits=1))
        self30 = r6.cell(30, 30)
        drop = max(self30 - r6.cell(30, t) for t in r6.n_values)
        rows.append(_row(sec, claims[2] + " (largest drop below n = 30's own)", "claim", drop,
                         f"≤ {T['fig6_pp']:g} pp", drop <= T["fig6_pp"], unit="pp", digits=1))

    # --- beta_sm (section 5, Fig. 7) ---------------------------------------------------------------------
    r7, s7 = _load(load_confidence_results, root)
    sec = "Softmax slope β_sm (section 5, Fig. 7)"
    tolb = f"within × {T['beta_factor']:g}"
    for n, ref in paper.BETA_SM.items():
        q = f"fitted β_sm, n = {n}"
        if r7 is None or n not in r7:
            rows.append(_row(sec, q, ref, None, tolb, None, state=s7 or "missing", unit=""))
            continue
        v = float(r7[n]["beta_sm"])
        ratio = v / ref
        rows.append(_row(sec, q, ref, v, tolb, 1 / T["beta_factor"] <= ratio <= T["beta_factor"], unit=""))
    v = beta_from_confidence(paper.BETA_SM_SINGLE_Z)
    rows.append(_row(sec, f"β_sm from Z = {paper.BETA_SM_SINGLE_Z:g} (outputs at their targets)",
                     paper.BETA_SM_SINGLE, v, f"± {T['beta_single_abs']:g}",
                     abs(v - paper.BETA_SM_SINGLE) <= T["beta_single_abs"], unit=""))

    # --- talk slides: n = 2 / n = 8 ----------------------------------------------------------------------
    sec = "Talk slides: adversarial transfer n = 2 / n = 8"
    rows += _transfer_rows(sec, paper.SLIDES_TRANSFER_ERROR, T["slides_pp"], r5, s5)
    return rows



def _transfer_rows(sec: str, reference: dict[int, dict[int, float]], tol_pp: float, r5: Any,
                   state: str | None) -> list[dict[str, str]]:
    """One row per (generator, tested) cell of a transfer-error table beside ``reference``."""
    out = []
    for g, row in reference.items():
        for t, ref in row.items():
            q = f"generated by n = {g}, tested by n = {t}"
            if r5 is None or g not in r5.n_values or t not in r5.n_values:
                out.append(_row(sec, q, ref, None, f"± {tol_pp:g} pp", None, state=state or "missing", digits=1))
                continue
            v = r5.cell(g, t)
            out.append(_row(sec, q, ref, v, f"± {tol_pp:g} pp", abs(v - ref) <= tol_pp, digits=1))
    return out

def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("$", "\\$")


def render(rows: list[dict[str, str]]) -> str:
    """The MyST page."""
    counts = {k: sum(r["mark"] == v for r in rows) for k, v in MARKS.items()}
    out = [
        "# Scorecard",
        "",
        "Every number of {cite}`krotov2018dense` (and of the talk slides {cite}`krotov2019slides`) that this book",
        "recomputes, beside ours. The page is generated by `python -m dam_utils.scorecard` from the committed",
        "artifacts (`make book` runs it first); do not edit it by hand. *delta* is ours minus the paper's. The",
        "tolerances were fixed in `dam_utils/scorecard.py` before the comparison; a row that deviates is",
        "discussed in its chapter. \"not computed yet\" means the result is not cached under `artifacts/`;",
        "\"stale\" that it was computed with models that are no longer the book's (run `make reproduce`).",
        "",
        f"**Summary:** {counts['pass']} pass, {counts['deviates']} deviate, {counts['missing']} not computed yet, "
        f"{counts['stale']} stale, of {len(rows)} rows.",
        "",
        "Tolerances:",
        "",
        *(f"* {TOLERANCE_TEXT[k].format(f'{v:g}')}" for k, v in TOLERANCES.items()),
        "",
    ]
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            out += ["", f"## {section}", "", "| quantity | paper | ours | delta | tolerance | mark |",
                    "| --- | --- | --- | --- | --- | --- |"]
        out.append("| " + " | ".join(_md_cell(r[k]) for k in ("quantity", "paper", "ours", "delta", "tolerance",
                                                                  "mark")) + " |")
    return "\n".join(out) + "\n"


def write_scorecard(path: Path = SCORECARD, root: Path | None = None) -> bool:
    """Write the page atomically; returns True when it changed."""
    text = render(build_rows(root))
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(path, text)
    return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write book/scorecard.md from the committed artifacts.")
    ap.add_argument("--out", type=Path, default=SCORECARD)
    args = ap.parse_args(argv)
    changed = write_scorecard(args.out)
    rows = build_rows()
    marks = {v: sum(r["mark"] == v for r in rows) for v in MARKS.values()}
    print(f"{args.out}: {'written' if changed else 'unchanged'}; " + ", ".join(f"{k}: {v}" for k, v in marks.items()))


if __name__ == "__main__":
    main()

