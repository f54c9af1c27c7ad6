"""Sphinx tweaks for dam-book (loaded through `local_extensions` in _config.yml).

MathJax on every page: Sphinx adds MathJax only to pages whose *content* has math, but the navigation
sidebar shows every chapter title, and titles carry math (DAM$_n$). Without this, pages such as
search.html and genindex.html showed raw ``\\(_n\\)`` in the sidebar.
"""

from __future__ import annotations


def setup(app):
    app.set_html_assets_policy("always")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
