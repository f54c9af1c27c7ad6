"""Glue values and the pages that use them (tools/glue_usage.py).

Every key a page references (``{glue:text}`key:.2f` ``) must be glued in the committed outputs of the
notebook it resolves in, and every glued key must be referenced by some page (a loop's keys count as one
family: ``vanish_n20`` referenced keeps ``vanish_n2``). Both are read from the committed notebooks, so
after a source edit this test passes only once the chapter is re-executed (``make notebooks``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT, committed_notebooks


def _load_tool():
    spec = importlib.util.spec_from_file_location("glue_usage", REPO_ROOT / "tools" / "glue_usage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gu = _load_tool()
GLUED, REFS = gu.usage()
UNUSED, UNDEFINED = gu.problems(GLUED, REFS)


def _doc(path: Path) -> str:
    return gu.doc_name(path)


def test_the_tool_sees_every_committed_notebook() -> None:
    assert set(GLUED) == {_doc(p) for p in committed_notebooks()}


@pytest.mark.parametrize("doc", sorted({_doc(p) for p in committed_notebooks()}))
def test_every_referenced_key_is_glued(doc: str) -> None:
    missing = UNDEFINED.get(doc, [])
    assert not missing, f"{doc} references keys its outputs never glue (re-execute it?): {missing}"


@pytest.mark.parametrize("doc", sorted({_doc(p) for p in committed_notebooks()}))
def test_every_glued_key_is_used(doc: str) -> None:
    idle = UNUSED.get(doc, [])
    assert not idle, f"{doc} glues keys no page references; remove the glue calls: {idle}"


@pytest.mark.parametrize("path", committed_notebooks(), ids=_doc)
def test_no_key_is_glued_twice(path: Path) -> None:
    """Sphinx (``-W``) refuses a page that glues one key twice, e.g. from inside a loop."""
    dup = gu.duplicate_keys(json.loads(path.read_text(encoding="utf-8")))
    assert not dup, f"{_doc(path)} glues these keys more than once: {dup}"


def test_a_duplicate_glue_is_caught() -> None:
    out = {"output_type": "display_data", "data": {"text/plain": "1"}, "metadata": {"scrapbook": {"name": "k"}}}
    nb = {"cells": [{"cell_type": "code", "source": "", "outputs": [out, out]}]}
    assert gu.duplicate_keys(nb) == ["k"]


@pytest.mark.parametrize("path", committed_notebooks(), ids=_doc)
def test_every_glue_call_in_the_source_is_used(path: Path) -> None:
    """The same rule on the code cells, which the outputs follow only after a re-execution: each
    ``glue`` call's key (an f-string read as a pattern) is referenced by some page."""
    idle = gu.source_report(path, REFS)
    assert not idle, f"{_doc(path)}: glue calls no page uses\n" + "\n".join(idle)
    missing = gu.source_undefined(path, REFS)
    assert not missing, f"{_doc(path)}: referenced keys no glue call produces: {missing}"


def test_references_to_other_pages_resolve_there() -> None:
    refs = {(d, k) for d, k in REFS if d not in GLUED}
    assert not refs, f"references to pages that are not notebooks of the book: {sorted(refs)}"


# --- the checks themselves can fail ----------------------------------------------------------------------


def _nb(glued: list[str], markdown: str) -> dict:
    outputs = [{"output_type": "display_data", "data": {"application/papermill.record/text/plain": "1"},
                "metadata": {"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}}}
               for k in glued]
    return {"cells": [{"cell_type": "code", "source": ["glue(...)\n"], "outputs": outputs},
                      {"cell_type": "markdown", "source": [markdown]}]}


def test_a_synthetic_page_with_both_faults_is_caught() -> None:
    nb = _nb(["used", "idle", "vanish_n2", "vanish_n20", "v5_ours"],
             "{glue:text}`used:.2f`, {glue}`vanish_n20`, {glue:text}`v7_ours` and {glue:md}`absent`")
    glued = {"ch": gu.glued_keys(nb)}
    refs = gu.references(gu.markdown_text(nb), "ch")
    assert refs == {("ch", "used"), ("ch", "vanish_n20"), ("ch", "v7_ours"), ("ch", "absent")}
    unused, undefined = gu.problems(glued, refs)
    assert unused == {"ch": ["idle", "v5_ours"]}  # vanish_n2 is kept by its family, v5 is not v7's
    assert undefined == {"ch": ["absent", "v7_ours"]}


def test_directives_and_references_across_pages() -> None:
    text = "```{glue:figure} fig_key\n:name: x\n```\nand {glue:text}`notebooks/02_rubbish::eps:.2f`"
    assert gu.references(text, "book/intro") == {("book/intro", "fig_key"), ("notebooks/02_rubbish", "eps")}


def test_source_glue_calls_are_read_with_their_patterns() -> None:
    source = ('for key, value in {"a": 1, "b": 2}.items():\n    glue(key, value)\n'
              'for n in ns:\n    glue(f"x_n{n}", n)\nglue_verdict("v5", v)\nglue(name, 1)\n')
    nb = {"cells": [{"cell_type": "code", "source": [source]}]}
    patterns = [p for _, _, p in gu.glue_calls(nb)]
    assert patterns == ["a|b", "x_n.+", "(?:v5)(?:_ours|_tol|_verdict)", None]
