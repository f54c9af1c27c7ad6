"""Does the decision boundary of section 4 depend on the step size? Krotov & Hopfield (2018) say their
method "does not require a careful choice of the iteration step eps, provided that it is sufficiently
small"; :func:`step_size_sensitivity` reruns :func:`dam_utils.deform.deform` on the same images at several
step sizes and reports how far the boundary image moves (chapter 3's table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .deform import DeformConfig, DeformResult, deform
from .descent import energy
from .objectives import Classifier, as_classifier
from .params import ParameterError, check_float
from .rubbish_metrics import median, percent

__all__ = ["step_size_sensitivity"]


def step_size_sensitivity(
    model: Classifier,
    x: torch.Tensor,
    m: int,
    eps_values: Sequence[float],
    cfg: DeformConfig | None = None,
    labels: torch.Tensor | None = None,
    transfer: Mapping[str, Classifier] | None = None,
) -> list[dict[str, Any]]:
    """Run :func:`deform` (to the crossing only) at several step sizes on the same images.

    One row per ``eps`` (rows sorted by eps; the smallest is the reference): crossings, failures, median
    steps to the crossing, median ``||boundary - clean||`` and ``||behind - clean||``, the median
    ``||boundary_eps - boundary_ref||`` (does the crossing point depend on eps?), the share of behind
    images classified as the second choice; and for every model in ``transfer`` its error on the behind
    images (% whose label differs from ``labels``, default the clean top choice) and its label agreement
    with the reference eps (%, over images that crossed at both). Plain dicts: feed them to
    :func:`dam_utils.metrics.markdown_table`.
    """
    cfg = (cfg or DeformConfig()).replace(to_convergence=False)
    eps_sorted = sorted(check_float("eps", e, 0.0, None, lo_inclusive=False) for e in eps_values)
    if not eps_sorted:
        raise ParameterError("Parameter 'eps_values' = [] is invalid: must list at least one step size.")
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"labels has {len(labels)} entries for {len(x)} images")
    transfer = {k: as_classifier(v) for k, v in (transfer or {}).items()}
    dev = x.device
    rows: list[dict[str, Any]] = []
    ref: DeformResult | None = None
    ref_pred: dict[str, torch.Tensor] = {}
    for eps in eps_sorted:
        res = deform(model, x, m, cfg.replace(eps=eps))
        c = res.crossed
        truth = labels.cpu() if labels is not None else res.top
        row: dict[str, Any] = {
            "eps": eps,
            "crossed": int(c.sum()),
            "failed": int((~c).sum()),
            "median_cross_step": median(res.cross_step[c]),
            "median_boundary_dist": median(res.boundary_distance()[c]),
            "median_behind_dist": median(res.behind_distance()[c]),
            "behind_is_second_%": percent(res.behind_is_second[c]),
            "wall_time_s": res.wall_time_s,
        }
        if ref is None:
            ref = res
        both = c & ref.crossed
        row["median_boundary_shift"] = median((res.boundary - ref.boundary)[both].norm(dim=1))
        for name, clf in transfer.items():
            pred = energy(clf, res.behind.to(dev)).argmax(1).cpu()
            row[f"{name}_error_%"] = percent((pred != truth)[c])
            if name not in ref_pred:
                ref_pred[name] = pred
            row[f"{name}_agree_%"] = percent((pred == ref_pred[name])[both])
        rows.append(row)
    return rows

