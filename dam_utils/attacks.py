"""Compatibility shim, to be deleted: the attacks now live in :mod:`dam_utils.objectives`,
:mod:`dam_utils.descent`, :mod:`dam_utils.rubbish`, :mod:`dam_utils.deform` and
:mod:`dam_utils.sensitivity`. Only chapter 4's set-up cell still imports from here
(``from dam_utils.attacks import DeformConfig, RubbishConfig``); once it imports them from
:mod:`dam_utils.deform` and :mod:`dam_utils.rubbish`, delete this file.
"""

from __future__ import annotations

from .deform import DeformConfig
from .rubbish import RubbishConfig

__all__ = ["DeformConfig", "RubbishConfig"]
