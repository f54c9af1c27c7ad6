"""The scorecard: every number of the paper beside ours, with the difference and a pass / deviates mark.

``python -m dam_utils.scorecard`` writes ``book/scorecard.md`` (atomically; untouched when nothing changed,
so Sphinx does not rebuild it) from what is committed under ``artifacts/``: the book models' manifest
entries (clean test errors) and the cached results of chapter 4 (:mod:`dam_utils.results_cache`). Nothing is
computed from the models here, so it runs in a second. A result that is missing reads "not computed yet"; one
computed with other models than the current book models reads "stale: recompute" (``make reproduce``); one
whose file no longer matches its checksum reads "modified: checksum mismatch" (it was edited by hand).

Every rule, threshold and tolerance comes from :mod:`dam_utils.claims` (the same verdicts chapter 4 shows);
the paper's numbers come from :mod:`dam_utils.paper` only. This module only renders them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import audit_tables, claims, extensions_report, hinthorn, musunuru_report, paper, section6_tables
from .artifacts import ArtifactError, read_manifest
from .atomic import atomic_write_text
from .audit import CHECK_EPS, load_audit
from .cnn import committed_cnn
from .confidence import beta_from_confidence
from .extension_models import POWERS
from .extensions import load_part
from .hard_negatives import ETAS, GROUPINGS, SDConfig, load_hard_negatives
from .lbfgs_pairs import load_pairs
from .paths import REPO_ROOT
from .results_cache import (
    ResultMissingError,
    ResultModifiedError,
    StaleResultError,
    load_confidence_results,
    load_rubbish_results,
    load_transfer_results,
)
from .section6 import DAM_POWERS, load_section6
from .slides import SLIDES_TRANSFER

__all__ = ["MARKS", "build_rows", "main", "render", "write_scorecard"]

MARKS = {"pass": "✓ pass", "deviates": "✗ deviates", "missing": "not computed yet", "stale": "stale: recompute",
         "modified": "modified: checksum mismatch",
         "unreadable": "unreadable: run `python -m dam_utils.artifacts verify`"}
SCORECARD = REPO_ROOT / "book" / "scorecard.md"


def _load(fn: Callable[..., Any], root: Path | None) -> tuple[Any, str | None]:
    """(result, None), or (None, "missing" / "modified" / "stale" / "unreadable")."""
    try:
        return fn(root), None
    except ResultMissingError:
        return None, "missing"
    except ResultModifiedError:
        return None, "modified"
    except StaleResultError:
        return None, "stale"
    except ArtifactError:  # listed but missing on disk, or not a results file
        return None, "unreadable"


def _row(section: str, v: claims.Verdict, state: str | None = None, digits: int = 2,
         quantity: str | None = None) -> dict[str, str]:
    """One table row from a verdict; ``state`` (missing / stale / modified) when there is no result at all."""
    unit = v.unit
    ref = v.paper
    if v.holds is None:
        mark, ours_s, delta_s = MARKS[state or "missing"], "–", "–"
    else:
        mark = MARKS["pass"] if v.holds else MARKS["deviates"]
        assert v.ours is not None
        ours_s = f"{v.ours:.{digits}f}" if abs(v.ours) < 1e4 else f"{v.ours:.3g}"
        ours_s += f" {unit}" if unit else ""
        delta_s = f"{v.ours - ref:+.{digits}f}" if isinstance(ref, (int, float)) else "–"
    # the paper's value exactly as printed (9.07 stays 9.07)
    if isinstance(ref, (int, float)):
        ref_s = f"{ref:g}" + (f" {unit}" if unit else "")
    else:
        ref_s = "–" if ref is None else str(ref)
    return {"section": section, "quantity": quantity or v.claim, "paper": ref_s, "ours": ours_s, "delta": delta_s,
            "tolerance": v.tolerance, "mark": mark}


def build_rows(root: Path | None = None) -> list[dict[str, str]]:
    """Every row of the scorecard, in the paper's order."""
    rows: list[dict[str, str]] = []
    manifest = read_manifest(root)
    # --- clean test errors (Fig. 5, right) --------------------------------------------------------------
    sec = "Clean test error (Fig. 5, right; section 2)"
    ours_err: dict[int, float] = {}
    for n in paper.TEST_ERROR:
        e = manifest["artifacts"].get(manifest["book_models"].get(str(n)) or "", {})
        if "test_error" in e:
            ours_err[n] = float(e["test_error"])
        rows.append(_row(sec, claims.test_error(n, ours_err.get(n)), quantity=f"n = {n}"))
    lo, hi = paper.TEST_ERROR_RANGE
    tol = claims.TEST_ERROR_PP
    inside = bool(ours_err) and all(lo - tol <= v <= hi + tol for v in ours_err.values())
    rng = f"{min(ours_err.values()):.2f}–{max(ours_err.values()):.2f} %" if ours_err else "–"
    rows.append({"section": sec, "quantity": "range over n = 2…30", "paper": f"{lo:g}–{hi:g} %", "ours": rng,
                 "delta": "–", "tolerance": f"inside ± {tol:g} pp",
                 "mark": MARKS["missing"] if not ours_err else MARKS["pass"] if inside else MARKS["deviates"]})

    # --- Fig. 5 ----------------------------------------------------------------------------------------
    r5, s5 = _load(load_transfer_results, root)
    sec = "Adversarial transfer, error (Fig. 5)"
    table5 = {} if r5 is None else {(g, t): r5.cell(g, t) for g in r5.n_values for t in r5.n_values}
    rows += _cell_rows(sec, paper.FIG5_TRANSFER_ERROR, table5, s5)
    v5 = claims.fig5_small_to_large(table5, [] if r5 is None else r5.n_values)
    rows.append(_row(sec, v5, s5, digits=1, quantity="n = 30 classifies correctly the images made by n = 2 and 3"))

    # --- Fig. 6 ----------------------------------------------------------------------------------------
    r6, s6 = _load(load_rubbish_results, root)
    r7, s7 = _load(load_confidence_results, root)
    sec = f"Rubbish transfer, mean confidence at β_sm = {paper.BETA_SM_SINGLE:g} (Fig. 6)"
    conf6 = {} if r6 is None else {(g, t): r6.cell(g, t) for g in r6.n_values for t in r6.n_values}
    clean = {} if r7 is None else {n: float(r["mean_confidence_single"]) for n, r in r7.items()}
    for (g, t), ref in paper.FIG6_MEAN_CONFIDENCE.items():
        q = f"generated by n = {g}, tested by n = {t}"
        if t in clean:
            q += f" (n = {t} on clean test digits: {clean[t]:.1f} %)"
        rows.append(_row(sec, claims.cell(q, conf6.get((g, t)), ref), s6, digits=1))
    ns6 = [] if r6 is None else r6.n_values
    for v in (claims.fig6_small_recognised(conf6, ns6), claims.fig6_small_to_large(conf6, ns6),
              claims.fig6_large_no_loss(conf6, ns6)):
        rows.append(_row(sec, v, s6, digits=1))

    # --- beta_sm (section 5, Fig. 7) ---------------------------------------------------------------------
    sec = "Softmax slope β_sm (section 5, Fig. 7)"
    for n in paper.BETA_SM:
        ours = None if r7 is None or n not in r7 else float(r7[n]["beta_sm"])
        rows.append(_row(sec, claims.beta_sm(n, ours), s7))
    rows.append(_row(sec, claims.beta_single(beta_from_confidence(paper.BETA_SM_SINGLE_Z))))

    # --- talk slides: n = 2 / n = 8 (appendix A) -----------------------------------------------------------
    rs, ss = _load(lambda r: load_transfer_results(r, name=SLIDES_TRANSFER), root)
    table_s = {} if rs is None else {(g, t): rs.cell(g, t) for g in rs.n_values for t in rs.n_values}
    rows += _cell_rows("Talk slides: adversarial transfer n = 2 / n = 8 (appendix A)", paper.SLIDES_TRANSFER_ERROR,
                       table_s, ss)
    return (rows + _section6_rows(root, r6) + _extensions_rows(root) + _audit_rows(root) + _hinthorn_rows(root)
            + _musunuru_rows(root))


def _extensions_rows(root: Path | None) -> list[dict[str, str]]:
    """Chapter 6: the paper's two expectations of adversarial training (per power), the DAM on CNN features against
    the CNN's head (both data sets), and section 5's key cell on Fashion-MNIST."""
    sec = "Section 6's proposed extensions, done (chapter 6)"
    out = []
    adv, state = _load(lambda r: load_part("adversarial", r), root)
    for n in POWERS:
        if adv is None:
            out += [_row(sec, claims.adv_more_robust(n, None, None, None), state),
                    _row(sec, claims.adv_more_accurate(n, None, None, None, None), state)]
        else:
            v = extensions_report.adv_verdicts(adv)[n]
            out += [_row(sec, v["robust"], None, digits=1), _row(sec, v["accurate"], None, digits=2)]
    for part, name in (("features_mnist", "MNIST"), ("features_fashion", "Fashion-MNIST")):
        res, state = _load(lambda r, p=part: load_part(p, r), root)
        v = extensions_report.feature_verdict(res, name) if res is not None else claims.feature_head(name, None, None)
        out.append(_row(sec, v, state, digits=2))
    fas, state = _load(lambda r: load_part("fashion", r), root)
    v = (extensions_report.fashion_verdict(fas) if fas is not None
         else claims.not_computed("the largest-n model classifies correctly the images made by the small-n models "
                                  "(Fashion-MNIST)", paper.FIG5_CORRECT_N30))
    return [*out, _row(sec, v, state, digits=1)]


def _audit_rows(root: Path | None) -> list[dict[str, str]]:
    """Chapter 7: the title read as a white-box claim, and per large-n DAM its margin over the ReLU baseline
    under AutoAttack and its gradient-masking checks."""
    res, state = _load(load_audit, root)
    sec = "The title under white-box attack (chapter 7, an independent audit)"
    ver = {} if res is None else audit_tables.verdicts(res)
    out = []
    for n in (n for n in DAM_POWERS if n >= claims.LARGE_N_MIN):
        key = f"DAM n={n}"
        v = ver.get(key)
        for norm in ("Linf", "L2"):
            eps = CHECK_EPS[norm]
            gain = None if v is None else v["whitebox"][norm] - v["baseline"][norm]
            out.append(_row(sec, claims.whitebox_gain(f"{key} beats the ReLU network under AutoAttack ({norm}, "
                                                      f"ε = {eps:g})", gain), state, digits=1))
        out.append(_row(sec, claims.no_masking(f"{key}: no sign of gradient masking",
                                               None if v is None else len(v["masking_checks"])), state, digits=0))
    large = {} if res is None else {res.info[k]["n"]: x["verdict"] for k, x in ver.items()
                                    if res.info[k]["family"] == "DAM"}
    out.append(_row(sec, claims.large_n_whitebox_robust(large), state, digits=0))
    return out


def _section6_rows(root: Path | None, r6: Any) -> list[dict[str, str]]:
    """Section 6's sentence (chapter 5): the largest-n CE network against the ReLU network and the DAM of the
    same n against it, on both measures; the guard of section 5 as a detector and in the pair."""
    res, state = _load(load_section6, root)
    sec = "Section 6 and the end of section 5 (chapter 5)"
    relu, net, dam = "net CE n=1", "net CE n=30", "DAM n=30"
    pairs = [(net, relu), (dam, net)]
    relu_err = None if res is None or relu not in res.keys else float(res.info[relu]["test_error"])
    out = [_row(sec, claims.dnn_test_error(relu_err), state)]
    for better, worse in pairs:
        for measure in ("transfer", "fgsm"):
            if res is None or better not in res.keys or worse not in res.keys:
                v = claims.sec6_better(f"{better} beats {worse}: {measure}", None, None)
            else:
                v = section6_tables.sec6_verdicts(res, better, worse)[measure]
            out.append(_row(sec, v, state, digits=1))
    rocs = {} if res is None else section6_tables.detector_rocs(res, r6)
    for name in ("adversarial, net CE n=1", "adversarial, DAM n=2", "rubbish, DAM n=2"):
        auc = rocs[name]["auc"] if name in rocs else None
        out.append(_row(sec, claims.detector_auc(f"{dam} detects {name} images (AUC)", auc), state, digits=3))
    wrong = None
    if res is not None and relu in res.keys:
        rows = section6_tables.pair_rows(res, relu)
        wrong = next(r["wrong"] for r in rows if r["inputs"] == f"adversarial, {relu}" and r["system"] ==
                     f"pair, {section6_tables.RULE_TEXT['paper']}")
    out.append(_row(sec, claims.pair_stops(f"the pair ({relu}, {dam}, paper's rule) stops the attack on {relu}",
                                           wrong), state, digits=1))
    return out


def _hinthorn_rows(root: Path | None) -> list[dict[str, str]]:
    """Appendix B: the base CNN's accuracy, the number of pairs, every cell of Tables 1-3 (the mean over our
    seeds, in percent) and the report's claims about selective dropout."""
    sec = "Hinthorn's report: base CNN and L-BFGS pairs (appendix B)"
    manifest = read_manifest(root)
    e = manifest["artifacts"].get(committed_cnn("cpu", root) or "", {})
    acc = 100.0 - float(e["test_error"]) if "test_error" in e else None
    ref = paper.HINTHORN_BASE_ACCURACY
    out = [_row(sec, claims.Verdict("base CNN test accuracy", acc, ref, f">= {ref:g} %",
                                    claims.NOT_COMPUTED if acc is None else "holds" if acc >= ref else "does not hold"),
                quantity="base CNN test accuracy")]
    pairs, ps = _load(lambda r: load_pairs(r)[0], root)
    n = None if pairs is None else float(len(pairs["index"]))
    out.append(_row(sec, claims.Verdict("L-BFGS pairs generated (every draw attacked until 208 succeed)", n,
                                        paper.HINTHORN_N_PAIRS, "= 208", claims.NOT_COMPUTED if n is None else
                                        "holds" if n == paper.HINTHORN_N_PAIRS else "does not hold", ""), ps, digits=0))
    res, gs = _load(load_hard_negatives, root)
    cells = [] if res is None else hinthorn.cell_means(res[0])
    ours = {(c["grouping"], c["eta"], c["column"]): c["ours"] for c in cells}
    for k, grouping in enumerate(GROUPINGS):
        sec = f"Hinthorn's Table {k + 1}: withheld adversarials right, mean of our seeds (appendix B)"
        for eta in ETAS:
            for col, ref in zip(hinthorn.COLUMN_ARM, paper.HINTHORN_TABLES[grouping][eta], strict=True):
                v = ours.get((grouping, eta, col))
                out.append(_row(sec, claims.cell(f"η = {eta:g}, {col}", None if v is None else 100.0 * v, 100.0 * ref),
                                gs, digits=1))
    sec = "Hinthorn's claims about selective dropout (appendix B)"
    if res is None:
        return [*out, _row(sec, claims.not_computed("the report's claims (§5.5-5.6)", "claim"), gs)]
    grid, doc = res
    cfg = SDConfig(**doc["config"]["grid"])
    verdicts = [*hinthorn.claim_verdicts(grid, cfg), *hinthorn.speed_and_retention(grid, cfg)[1],
                hinthorn.instability_verdict(hinthorn.instability(grid))]
    return out + [_row(sec, v, None, digits=2) for v in verdicts]


def _musunuru_rows(root: Path | None) -> list[dict[str, str]]:
    """Appendix C: the document's two numbers (40 images; "0.7" under every reading) and its claims about recall,
    from the committed draws scored by the iterative memory."""
    sec = "Musunuru et al.: 40 adversarials of a dense net, recalled by a Hopfield memory (appendix C)"
    mean, state = _load(musunuru_report.committed_mean, root)
    if mean is None:
        return [_row(sec, claims.not_computed("adversarial images of the dense net per draw", paper.MUSUNURU_N_ADV),
                     state),
                _row(sec, claims.not_computed("images misclassified by the memory (§II.B.2)", paper.MUSUNURU_WRONG),
                     state)]
    verdicts = musunuru_report.readings(mean) + musunuru_report.recall_verdicts(mean)
    return [_row(sec, v, None, digits=2) for v in verdicts]


def _cell_rows(sec: str, reference: Any, table: dict[tuple[int, int], float], state: str | None
               ) -> list[dict[str, str]]:
    """One row per (generator, tested) cell of a transfer-error table beside ``reference``."""
    return [_row(sec, claims.cell(f"generated by n = {g}, tested by n = {t}", table.get((g, t)), ref), state,
                 digits=1) for g, row in reference.items() for t, ref in row.items()]


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("$", "\\$")


def render(rows: list[dict[str, str]]) -> str:
    """The MyST page."""
    counts = {k: sum(r["mark"] == v for r in rows) for k, v in MARKS.items()}
    out = [
        "# Scorecard",
        "",
        "Every number of {cite}`krotov2018dense` (and of the talk slides {cite}`krotov2019slides`, Hinthorn's",
        "report {cite}`hinthorn2016visualization` and Musunuru et al. {cite}`musunuru2020characterizing`) that this",
        "book recomputes, beside ours. The page is generated",
        "by `python -m dam_utils.scorecard` from the committed artifacts (`make book` runs it first); do not edit",
        "it by hand. *delta* is ours minus the paper's. The",
        "rules and tolerances were fixed in `dam_utils/claims.py` before the comparison, and chapters 4-5 use the",
        "same ones; a row that deviates is discussed in its chapter. \"not computed yet\" means the result is",
        "not cached under `artifacts/`; \"stale\" that it was computed with models that are no longer the book's",
        "(run `make reproduce`); \"modified\" that a cached file no longer matches its checksum in the manifest",
        "(it was edited after it was written: restore it with git or recompute it).",
        "",
        f"**Summary:** {counts['pass']} pass, {counts['deviates']} deviate, {counts['missing']} not computed yet, "
        f"{counts['stale']} stale, {counts['modified']} modified, {counts['unreadable']} unreadable, "
        f"of {len(rows)} rows.",
        "",
        "Tolerances and rules:",
        "",
        *(f"* {t}" for t in claims.TOLERANCE_TEXT),
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

