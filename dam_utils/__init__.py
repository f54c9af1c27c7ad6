"""dam_utils: the code behind dam-book.

One module per concept (see README): ``data``, ``params``, ``model``, ``train``,
``config``, ``artifacts``, ``metrics``, ``plots``, ``widgets``, ``atomic``, ``paths``.
Notebooks import from here; they hold narration, calls and figures only.
"""

__version__ = "0.1.0"
