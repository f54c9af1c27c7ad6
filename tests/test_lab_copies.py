"""tools/lab_copies.py: the learner's working copies of the chapters (`make lab`).

Every chapter gets a copy with no MyST role left that Lab cannot render, the values filled in are the ones
the built book shows, the copy is signed (trusted), a learner's copy is kept unless reset, and making copies
never changes a committed notebook."""

from __future__ import annotations

import hashlib
import html
import json
import re
import sys

import nbformat
import pytest
from nbformat.sign import NotebookNotary

from conftest import REPO_ROOT, SITE_DIR, notebook_digests

sys.path.insert(0, str(REPO_ROOT / "tools"))
import lab_copies as L

CHAPTERS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))



@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    before = notebook_digests()
    dest = tmp_path_factory.mktemp("lab")
    report = L.make_copies(dest, reset=True)
    assert notebook_digests() == before, "making working copies changed a committed notebook"
    return dest, report


def test_every_chapter_gets_a_clean_signed_copy(copies) -> None:
    dest, report = copies
    assert [p.name for p, _ in report] == [p.name for p in CHAPTERS] and {w for _, w in report} == {"made"}
    for src in CHAPTERS:
        nb = nbformat.read(str(dest / src.name), as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert not re.search(r"\{(glue|cite)[^}]*\}`", text), f"{src.name}: a glue/cite role is left"
        assert nb.cells[0].metadata["tags"] == ["lab-working-copy"] and src.name in nb.cells[0].source
        assert nb.metadata[L.META_KEY]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert NotebookNotary().check_signature(nb), f"{src.name}: the copy is not trusted"
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        assert code == [c.source for c in nbformat.read(str(src), as_version=4).cells if c.cell_type == "code"]


def test_filled_values_are_the_ones_the_book_shows() -> None:
    """Chapter 3: every value filled in for a glue role appears in the built page's text."""
    page = SITE_DIR / "notebooks" / "03_deformations.html"
    if not page.is_file():
        pytest.fail(f"{page} does not exist: build the book first with `make book`")
    shown = html.unescape(re.sub(r"<[^>]+>", " ", page.read_text("utf-8")))
    src = REPO_ROOT / "notebooks" / "03_deformations.ipynb"
    values = {"notebooks/03_deformations": L.glued_values(json.loads(src.read_text("utf-8")))}
    filled = 0
    for cell in nbformat.read(str(src), as_version=4).cells:
        for m in L._GLUE.finditer(cell.source) if cell.cell_type == "markdown" else ():
            value = L.fill_roles(m.group(0), "notebooks/03_deformations", values, {})
            assert value in shown, f"{m.group(0)} -> {value!r} is not on the built page"
            filled += 1
    assert filled > 10


def test_fill_roles_formats_as_myst_nb_and_refuses_what_it_cannot_fill() -> None:
    values = {"doc": {"x": "0.12345", "s": "'text'", "k": "1500"}, "other/doc": {"y": "3"}}
    cites = {"a2018": "Krotov and Hopfield, 2018", "b2013": "Szegedy et al., 2013"}
    out = L.fill_roles("{glue:text}`x:.2f`, {glue}`s`, {glue:text}`k:,d`, {glue:text}`other/doc::y:d` "
                       "{cite}`a2018,b2013`", "doc", values, cites)
    assert out == "0.12, text, 1,500, 3 [Krotov and Hopfield, 2018; Szegedy et al., 2013]"
    for bad in ("{glue:text}`missing`", "{cite}`nobody`", "{glue:md}`x`", "```{glue:figure} x\n```"):
        with pytest.raises(L.RoleError):
            L.fill_roles(bad, "doc", values, cites)
    labels = L.citation_labels()
    assert labels["krotov2018dense"] == "Krotov and Hopfield, 2018"


def test_a_learners_copy_is_kept_unless_reset(tmp_path) -> None:
    dest = tmp_path / "lab"
    L.make_copies(dest)
    mine = dest / "03_deformations.ipynb"
    nb = json.loads(mine.read_text("utf-8"))
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "my notes", "id": "mine"})
    mine.write_text(json.dumps(nb))
    report = dict(L.make_copies(dest))
    assert report[mine] == "kept" and "my notes" in mine.read_text("utf-8")
    nb["metadata"][L.META_KEY]["source_sha256"] = "0" * 64  # as if the chapter changed since
    mine.write_text(json.dumps(nb))
    assert "changed since" in dict(L.make_copies(dest))[mine]
    L.make_copies(dest, reset=True)
    assert "my notes" not in mine.read_text("utf-8")
