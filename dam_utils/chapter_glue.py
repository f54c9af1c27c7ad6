"""Glue for the chapters: the few ways a chapter hands numbers and verdicts to its prose (myst-nb ``glue``).

Kept out of the computing modules: ``myst_nb`` is a book dependency only, imported when a function runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .claims import Verdict


def _glue(key: str, value: Any) -> None:
    from myst_nb import glue  # noqa: PLC0415  (optional: only the book has myst-nb)

    glue(key, value, display=False)


def glue_verdict(key: str, verdict: Verdict, digits: int = 1,
                 parts: tuple[str, ...] = ("ours", "tol", "verdict")) -> None:
    """Glue ``{key}_ours`` (our value or "not computed"), ``{key}_tol`` and ``{key}_verdict`` of a
    :class:`~dam_utils.claims.Verdict` (those of ``parts`` that the text uses)."""
    values = {"ours": verdict.ours_text(digits), "tol": verdict.tolerance, "verdict": verdict.state}
    for part in parts:
        _glue(f"{key}_{part}", values[part])


def listing(values: Mapping[Any, float], fmt: str = ".1f", unit: str = " %", prefix: str = "n = ") -> str:
    """``'n = 2: 1.2 %, n = 30: 3.4 %'`` (or ``'none'``), for a sentence that names every power."""
    return ", ".join(f"{prefix}{n}: {v:{fmt}}{unit}" for n, v in values.items()) or "none"
