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


def glue_verdict(key: str, verdict: Verdict, digits: int = 1) -> None:
    """Glue ``{key}_ours`` (our value or "not computed"), ``{key}_tol`` and ``{key}_verdict`` of a
    :class:`~dam_utils.claims.Verdict`."""
    _glue(f"{key}_ours", verdict.ours_text(digits))
    _glue(f"{key}_tol", verdict.tolerance)
    _glue(f"{key}_verdict", verdict.state)


def listing(values: Mapping[Any, float], fmt: str = ".1f", unit: str = " %", prefix: str = "n = ") -> str:
    """``'n = 2: 1.2 %, n = 30: 3.4 %'`` (or ``'none'``), for a sentence that names every power."""
    return ", ".join(f"{prefix}{n}: {v:{fmt}}{unit}" for n, v in values.items()) or "none"
