"""Measures of what a trained DAM_n has learned (chapter 1: features versus prototypes).

Krotov & Hopfield (2018, section 2 and Fig. 2), following Krotov & Hopfield (2016, section 5),
describe a transition from *feature* detectors at small n (each memory helps to recognise several
digit classes) to *prototypes* at large n (each memory is responsible for one class, and few
memories decide a given image). The 2018 paper shows this only as pictures. The two measures
below put numbers on it; both are ours, defined here precisely.

Notation as in :mod:`dam_utils.model`: ``xi`` (K, 784) visible weights, ``xc`` (K, 10) class
weights, ``a_mu = (xi^mu . v - sum_gamma xc^mu_gamma) / T``. In eq. (1) memory mu adds

    c_mu,alpha = relu(a_mu + 2 xc^mu_alpha / T)^n - relu(a_mu)^n

to the (pre-tanh, beta-scaled) energy difference ``D_alpha`` of class alpha. Since ``relu^n`` is
non-decreasing, ``c_mu,alpha >= 0`` when ``xc^mu_alpha > 0`` and ``<= 0`` when ``xc^mu_alpha < 0``:
the sign of a class weight says whether the memory can only vote *for* or only *against* that
class, whatever the image.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .health import one_vote_share
from .model import DAM, N_CLASSES
from .paper import TEST_ERROR
from .train import init_weights

__all__ = [
    "class_specialisation",
    "config_rows",
    "contributors_per_decision",
    "decision_contributions",
    "error_table",
    "html_table",
    "initial_specialisation",
    "markdown_table",
    "provenance_rows",
    "summarise",
]


def class_specialisation(model: DAM, margin: float = 0.5) -> dict[str, Any]:
    """How many memories are dedicated to a single digit class.

    Definition (used throughout the book): memory mu is **specialised** when *exactly one* of
    its ten class weights ``xi_alpha^mu`` is positive. By the sign argument in the module
    docstring such a memory can raise the output of one class only: it is a prototype-like vote
    for that class and against the other nine. A feature detector that serves several classes
    has several positive class weights (or, never voting for anything, none).

    A second, softer criterion is reported too: the largest class weight exceeds the second
    largest by at least ``margin`` (weights live in [-1, 1]).

    Returns a dict with
        ``fraction_single``: fraction of memories with exactly one positive class weight;
        ``fraction_margin``: fraction whose top class weight beats the runner-up by ``margin``;
        ``positive_counts``: list of 11 ints, how many memories have 0, 1, ..., 10 positive
        class weights;
        ``mean_positive``: mean number of positive class weights per memory;
        ``per_class``: list of 10 ints, specialised memories per digit class (by the one class);
        ``K``: number of memories; ``margin``: the margin used.
    """
    xc = model.xc.detach().float().cpu()
    k = xc.shape[0]
    positive = (xc > 0).sum(1)  # (K,)
    single = positive == 1
    top2 = xc.topk(2, dim=1).values
    by_margin = (top2[:, 0] - top2[:, 1]) >= margin
    counts = torch.bincount(positive, minlength=N_CLASSES + 1)
    per_class = torch.bincount(xc[single].argmax(1), minlength=N_CLASSES) if single.any() else torch.zeros(
        N_CLASSES, dtype=torch.long
    )
    return {
        "K": k,
        "margin": float(margin),
        "fraction_single": float(single.float().mean()),
        "fraction_margin": float(by_margin.float().mean()),
        "positive_counts": [int(c) for c in counts],
        "mean_positive": float(positive.float().mean()),
        "per_class": [int(c) for c in per_class],
    }


def initial_specialisation(cfg: Any, margin: float = 0.5) -> dict[str, Any]:
    """:func:`class_specialisation` of the untrained weights of a :class:`~dam_utils.train.TrainConfig`.

    The baseline for the trained models: the initial weights ~ N(-0.3, 0.3) already give each class
    weight a probability of about 16 % to be positive, hence about a third of the memories with exactly
    one positive class weight before any training.
    """
    w = init_weights(cfg)
    return class_specialisation(DAM(w[:, :-N_CLASSES], w[:, -N_CLASSES:], cfg.n, cfg.T_i), margin)


@torch.no_grad()
def decision_contributions(model: DAM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-memory contributions to the decision margin ``D_top - D_second`` of each image.

    With ``top`` and ``second`` the two classes with the largest energy differences, eq. (1) gives
    ``D_top - D_second = sum_mu [relu(a_mu + 2 xc^mu_top / T)^n - relu(a_mu + 2 xc^mu_second / T)^n]``
    (the ``relu(a_mu)^n`` terms cancel). Returns ``(contrib, classes)``: contrib (B, K) in
    float64, classes (B, 2) the top and runner-up class. No gradients; one batch at a time.
    """
    xi = model.xi.detach().to(torch.float64)
    xc = model.xc.detach().to(torch.float64)
    v = x.to(xi.device, torch.float64)
    a = (v @ xi.T - xc.sum(1)) / model.T  # (B, K), temperature folded in as in the model
    c2 = 2.0 * xc / model.T  # (K, C)
    d = (a.unsqueeze(2) + c2.unsqueeze(0)).clamp(min=0).pow(model.n).sum(1)  # D + const, (B, C)
    classes = d.topk(2, dim=1).indices  # (B, 2)
    top = (a + c2.T[classes[:, 0]]).clamp(min=0).pow(model.n)  # (B, K)
    second = (a + c2.T[classes[:, 1]]).clamp(min=0).pow(model.n)
    return top - second, classes


@torch.no_grad()
def contributors_per_decision(
    model: DAM, x: torch.Tensor, batch_size: int = 500, kind: str = "participation"
) -> torch.Tensor:
    """How many memories decide each image; (B,) float64 tensor on the CPU.

    ``kind="participation"`` (default): the participation ratio of the per-memory contributions
    ``c_mu`` to the decision margin ``D_top - D_second`` (:func:`decision_contributions`),

        PR = (sum_mu |c_mu|)^2 / sum_mu c_mu^2,

    the effective number of memories that make the decision. It is K when all memories
    contribute equally, 1 when a single memory does it all, and does not depend on beta.
    Images whose margin has no contributor at all (every c_mu = 0) get PR = 0.

    ``kind="active"``: the number of memories with a non-zero contribution (a rectified
    argument above zero for the top or the runner-up class), an upper bound of the above.

    Krotov & Hopfield (2016, section 5) describe the same effect: at small n many memories
    add up to a decision (features), at large n a few dominate it (prototypes).
    """
    if kind not in ("participation", "active"):
        raise ValueError(f"kind must be 'participation' or 'active', got {kind!r}")
    out = []
    for i in range(0, len(x), batch_size):
        c, _ = decision_contributions(model, x[i : i + batch_size])
        if kind == "active":
            out.append((c != 0).sum(1).to(torch.float64).cpu())
            continue
        scale = c.abs().amax(1, keepdim=True)  # normalise first: c^2 can overflow for large n
        c = c / torch.where(scale > 0, scale, torch.ones_like(scale))
        s1, s2 = c.abs().sum(1), c.pow(2).sum(1)
        safe = torch.where(s2 > 0, s2, torch.ones_like(s2))
        pr = torch.where(s2 > 0, s1.pow(2) / safe, torch.zeros_like(s2))
        out.append(pr.cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def summarise(values: torch.Tensor) -> dict[str, float]:
    """Median, quartiles and mean of a 1-D tensor (for contributors per decision)."""
    v = values.to(torch.float64).flatten()
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]), "mean": float(v.mean())}


def error_table(
    models: Mapping[int, DAM], data: Any, paper: Mapping[int, float] = TEST_ERROR, batch_size: int = 1000
) -> list[dict[str, Any]]:
    """Test error of each model beside the paper's (2018, Fig. 5), one row per n in the given order.

    Row keys: ``n``, ``test_error`` (percent, :meth:`DAM.error_rate` on ``data.x_test``),
    ``n_errors`` (misclassified test images), ``paper_test_error`` (None if the paper has no
    model for this n) and ``difference`` (ours minus the paper's, percentage points, or None).
    """
    rows = []
    for n, model in models.items():
        err = model.error_rate(data.x_test, data.y_test, batch_size=batch_size)
        ref = paper.get(int(n))
        rows.append(
            {
                "n": int(n),
                "test_error": err,
                "n_errors": round(err * len(data.y_test) / 100.0),
                "paper_test_error": ref,
                "difference": None if ref is None else err - ref,
            }
        )
    return rows


#: TrainConfig fields shown in the hyperparameter table, with their column headers.
CONFIG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n", "n"),
    ("K", "K"),
    ("epochs", "epochs"),
    ("m", "m"),
    ("eps0", "ε₀"),
    ("f", "f"),
    ("p", "p"),
    ("T_i", "T_i"),
    ("T_f", "T_f"),
    ("ramp_epochs", "ramp epochs"),
    ("per_class", "examples per class per minibatch"),
    ("batches_per_epoch", "minibatches per epoch"),
    ("seed", "seed"),
)


def health_rows(reports: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One table row per labelled :func:`~dam_utils.health.health_report` (chapter 1), in the given order."""
    return [{"model": label, "dead on training set (%)": h["dead_train_%"], "dead on test set (%)": h["dead_test_%"],
             "silent (%)": h["silent_train_%"], "live memories with one positive class weight (%)": one_vote_share(h)}
            for label, h in reports.items()]


def specialisation_rows(specialisation: Mapping[int, Mapping[str, float]], summary: Mapping[int, Mapping[str, float]],
                        baseline: Mapping[str, float]) -> list[dict[str, Any]]:
    """Chapter 1's feature-to-prototype table: per power, :func:`class_specialisation` and the
    :func:`summarise`-d memories per decision; a last row for the untrained weights (``baseline``)."""
    margin = f"top − second ≥ {baseline['margin']:g} (%)"

    def row(n: Any, spec: Mapping[str, float], s: Mapping[str, float] | None) -> dict[str, Any]:
        return {"n": n, "one positive class weight (%)": 100 * spec["fraction_single"],
                margin: 100 * spec["fraction_margin"], "positive class weights per memory": spec["mean_positive"],
                "memories per decision (median)": s["median"] if s else None,
                "quartiles": f"{s['q25']:.3g}–{s['q75']:.3g}" if s else None}

    return [row(n, spec, summary[n]) for n, spec in specialisation.items()] + [row("untrained", baseline, None)]


def config_rows(configs: Iterable[Any]) -> list[dict[str, Any]]:
    """Hyperparameter rows (dicts keyed by the headers of :data:`CONFIG_COLUMNS`) from TrainConfigs
    (or their ``to_dict()``), e.g. for :func:`markdown_table`."""
    rows = []
    for cfg in configs:
        d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        rows.append({head: d[key] for key, head in CONFIG_COLUMNS})
    return rows


def provenance_rows(entries: Mapping[int, Mapping[str, Any]], digits: int = 12) -> list[dict[str, Any]]:
    """Provenance of each model from its manifest entry: epochs, wall time, device, commit, sha256.

    Entries of models trained in the notebook itself (no file) have no sha256: shown as "not saved".
    """
    rows = []
    for n, e in entries.items():
        env = e.get("environment", {})
        commit = env.get("commit")
        dirty = "+dirty" if env.get("dam_utils_dirty") else ""
        wall = e.get("wall_time_s")
        rows.append(
            {
                "n": int(n),
                "epochs": e.get("epochs"),
                "wall time (h)": None if wall is None else round(float(wall) / 3600.0, 2),
                "device": env.get("device_name") or env.get("device"),
                "torch": env.get("torch"),
                "commit": commit[:digits] + dirty if commit else "none",
                "sha256": e["sha256"][:digits] if e.get("sha256") else "not saved",
            }
        )
    return rows


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value).replace("|", "\\|")


def markdown_table(
    rows: list[Mapping[str, Any]], floatfmt: str = ".4g", headers: Mapping[str, str] | None = None
) -> str:
    """A Markdown (MyST) table of dict rows; ``None`` prints as an en dash (for IPython's ``Markdown``)."""
    if not rows:
        return ""
    keys = list(rows[0])
    heads = [(headers or {}).get(k, k) for k in keys]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(" --- " for _ in keys) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(k), floatfmt) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def html_table(rows: list[Mapping[str, Any]], floatfmt: str = ".4g", caption: str | None = None) -> str:
    """An HTML table of dict rows (for ``IPython.display.HTML``); ``None`` prints as an en dash.

    HTML rather than Markdown because myst-nb renders Markdown outputs as CommonMark, which has no tables.
    """
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(value: Any) -> str:
        return html.escape(_cell(value, floatfmt).replace("\\|", "|"))

    out = ['<table class="dam-table">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(str(k))}</th>" for k in keys) + "</tr></thead>")
    out.append("<tbody>")
    out += ["<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows]
    out.append("</tbody></table>")
    return "\n".join(out)
