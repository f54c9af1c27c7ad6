"""List glue keys: what each page glues (from its committed outputs) and what each page references.

myst-nb records ``glue("key", value, display=False)`` as a ``display_data`` output whose metadata holds
``{"scrapbook": {"name": "key", ...}}``; pages reference a key with a role or directive such as
``{glue:text}`key:.2f` ``, ``{glue}`key` ``, ``{glue:md}`key` `` or ```` ```{glue:figure} key ```` ````.
A reference without ``doc::`` resolves in its own page; ``{glue:text}`notebooks/02_rubbish::key` ``
resolves in the named notebook. The key is glued *and* used only when both sides agree.

Usage: ``python tools/glue_usage.py [--source]`` prints, per notebook, the glued keys no page uses and
the referenced keys the notebook never glues (keys glued by one loop count as one family, see
:func:`family`) and the keys glued more than once, and exits 1 when any list is non-empty. ``--source``
also lists the ``glue`` calls in the code cells whose key (an f-string read as a pattern) no page uses:
outputs lag behind the source until the chapters are re-executed.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The pages of the book that can glue or reference: every chapter notebook, the intro, the .md pages.
NOTEBOOKS = [*sorted((ROOT / "notebooks").glob("*.ipynb")), *sorted((ROOT / "book").glob("*.ipynb"))]
MD_PAGES = sorted((ROOT / "book").glob("*.md"))

# {glue}`key`, {glue:}`key`, {glue:text}`key:.2f`, {glue:md}`key`, {glue:any}`doc::key`
_ROLE = re.compile(r"\{glue(?::[a-z]*)?\}`([^`]+)`")
# ```{glue} key  /  ```{glue:figure} key  /  :::{glue:math} key
_DIRECTIVE = re.compile(r"(?:```|:::)\{glue(?::[a-z]*)?\}[ \t]+(\S+)")


def doc_name(path: Path) -> str:
    """The docname myst-nb uses: the path relative to the repository root, without its suffix."""
    return path.relative_to(ROOT).with_suffix("").as_posix()


def glued_keys(nb: dict) -> set[str]:
    """Keys glued in a notebook's committed outputs (``scrapbook`` metadata of its display data)."""
    keys = set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta and "name" in meta:
                keys.add(meta["name"])
    return keys


def duplicate_keys(nb: dict) -> list[str]:
    """Keys glued more than once in a notebook's committed outputs (the ``-W`` book build refuses them)."""
    names = [out["metadata"]["scrapbook"]["name"] for cell in nb["cells"] for out in cell.get("outputs", [])
             if "name" in out.get("metadata", {}).get("scrapbook", {})]
    return sorted({k for k in names if names.count(k) > 1})


def references(text: str, own_doc: str) -> set[tuple[str, str]]:
    """``(docname, key)`` for every glue role or directive in ``text``; a bare key belongs to ``own_doc``."""
    refs = set()
    for raw in [m.group(1) for m in _ROLE.finditer(text)] + [m.group(1) for m in _DIRECTIVE.finditer(text)]:
        doc, _, key = raw.rpartition("::")
        key = key.split(":", 1)[0]  # {glue:text}`key:.2f`: drop the format
        refs.add((doc.strip("/") or own_doc, key.strip()))
    return refs


def markdown_text(nb: dict) -> str:
    """The source of every markdown cell of a notebook, joined."""
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def usage(notebooks: list[Path] = NOTEBOOKS, md_pages: list[Path] = MD_PAGES) -> tuple[dict, set]:
    """``({docname: glued keys}, {(docname, key) referenced anywhere})`` for the book's pages."""
    glued: dict[str, set[str]] = {}
    refs: set[tuple[str, str]] = set()
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        glued[doc_name(path)] = glued_keys(nb)
        refs |= references(markdown_text(nb), doc_name(path))
    for path in md_pages:
        refs |= references(path.read_text(encoding="utf-8"), doc_name(path))
    return glued, refs


def family(key: str) -> str:
    """The key with its loop indices blanked: ``vanish_n20`` -> ``vanish_n#``, ``f5_2_30`` -> ``f5_#_#``.

    A loop such as ``for n in models: glue(f"vanish_n{n}", ...)`` glues one key per model; the text may
    name only some of them, and the loop is used when it does. Digits inside a word (``v5_ours``) stay."""
    return re.sub(r"(?<=_[ngc])\d+|(?<=_)\d+(?=_|$)", "#", key)


def problems(glued: dict[str, set[str]], refs: set[tuple[str, str]]) -> tuple[dict, dict]:
    """``(unused, undefined)``: per docname, glued keys no page references (not even a key of the same
    :func:`family`), and referenced keys the page never glues."""
    unused = {}
    for doc, keys in glued.items():
        used = {family(k) for d, k in refs if d == doc}
        unused[doc] = sorted(k for k in keys if family(k) not in used)
    undefined: dict[str, list[str]] = {}
    for doc, key in sorted(refs):
        if key not in glued.get(doc, set()):
            undefined.setdefault(doc, []).append(key)
    return {d: k for d, k in unused.items() if k}, undefined


def _key_pattern(node: ast.expr, loop_keys: dict[str, list[str]]) -> str | None:
    """A regex for the keys a glue call's first argument can take, or None when it cannot be read."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):  # f"tgt_g{g}_c{c}" -> tgt_g.+_c.+
        return "".join(re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in node.values)
    if isinstance(node, ast.Name) and node.id in loop_keys:
        return "|".join(re.escape(k) for k in loop_keys[node.id])
    return None


def glue_calls(nb: dict, helpers: dict[str, tuple[str, ...]] | None = None) -> list[tuple[int, int, str | None]]:
    """``(cell, line, key regex)`` for every ``glue(...)`` call in a notebook's code cells.

    ``for key, value in {"a": 1, ...}.items(): glue(key, ...)`` gives the literal keys; a helper such as
    ``glue_verdict("v5", ...)`` gives ``v5_`` followed by each suffix in ``helpers["glue_verdict"]``.
    """
    helpers = helpers if helpers is not None else {"glue_verdict": ("_ours", "_tol", "_verdict")}
    calls = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError as err:  # reported as an unreadable key: the cell needs fixing first
            calls.append((i, err.lineno or 0, None))
            continue
        loop_keys: dict[int, dict[str, list[str]]] = {}  # id(glue call) -> {loop variable: literal keys}
        for loop in ast.walk(tree):
            if (isinstance(loop, ast.For) and isinstance(loop.target, ast.Tuple)
                    and isinstance(loop.target.elts[0], ast.Name) and isinstance(loop.iter, ast.Call)
                    and isinstance(loop.iter.func, ast.Attribute) and isinstance(loop.iter.func.value, ast.Dict)):
                # for key, value in {"a": 1, ...}.items(): glue(key, ...)
                keys = [k.value for k in loop.iter.func.value.keys if isinstance(k, ast.Constant)]
                name = loop.target.elts[0]
            elif (isinstance(loop, ast.For) and isinstance(loop.target, ast.Name)
                    and isinstance(loop.iter, ast.Tuple | ast.List)):  # for key in ("a", "b"): glue(key, ...)
                keys, name = [k.value for k in loop.iter.elts if isinstance(k, ast.Constant)], loop.target
            else:
                continue
            for inner in ast.walk(loop):
                loop_keys.setdefault(id(inner), {})[name.id] = keys
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
                continue
            if node.func.id == "glue":
                calls.append((i, node.lineno, _key_pattern(node.args[0], loop_keys.get(id(node), {}))))
            elif node.func.id in helpers and (base := _key_pattern(node.args[0], {})) is not None:
                suffixes = "|".join(re.escape(s) for s in helpers[node.func.id])
                calls.append((i, node.lineno, f"(?:{base})(?:{suffixes})"))
    return sorted(calls, key=lambda c: c[:2])


def source_report(path: Path, refs: set[tuple[str, str]]) -> list[str]:
    """One line per glue call in ``path``'s code whose keys no page references (or that cannot be read)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    used = {k for d, k in refs if d == doc_name(path)}
    lines = []
    for cell, line, pattern in glue_calls(nb):
        if pattern is None:
            lines.append(f"  cell {cell} line {line}: key not readable, check by hand")
            continue
        if not any(re.fullmatch(pattern, k) for k in used):
            lines.append(f"  cell {cell} line {line}: /{pattern}/ used by no page")
        elif "|" in pattern and not pattern.startswith("(?:"):  # literal keys of a loop: name the unused ones
            idle = [alt for alt in pattern.split("|") if not any(re.fullmatch(alt, k) for k in used)]
            if idle:
                lines.append(f"  cell {cell} line {line}: loop keys used by no page: {', '.join(idle)}")
    return lines


def source_undefined(path: Path, refs: set[tuple[str, str]]) -> list[str]:
    """Keys the pages reference in ``path`` that no ``glue`` call in its code can produce."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    patterns = [p for _, _, p in glue_calls(nb) if p is not None]
    return sorted(k for d, k in refs if d == doc_name(path) and not any(re.fullmatch(p, k) for p in patterns))


def main() -> int:
    glued, refs = usage()
    unused, undefined = problems(glued, refs)
    for doc, keys in glued.items():
        used = len(keys) - len(unused.get(doc, []))
        print(f"{doc}: {len(keys)} glued, {used} used, {len(unused.get(doc, []))} unused")
        if unused.get(doc):
            print("  unused:", " ".join(unused[doc]))
        if undefined.get(doc):
            print("  referenced, never glued:", " ".join(undefined[doc]))
    for doc in sorted(set(undefined) - set(glued)):
        print(f"{doc}: referenced, no such notebook:", " ".join(undefined[doc]))
    duplicated = {doc_name(p): d for p in NOTEBOOKS if (d := duplicate_keys(json.loads(p.read_text(encoding="utf-8"))))}
    for doc, keys in duplicated.items():
        print(f"{doc}: glued more than once:", " ".join(keys))
    if "--source" in sys.argv:
        for path in NOTEBOOKS:
            print(f"{doc_name(path)} (source):", *source_report(path, refs), sep="\n")
            if missing := source_undefined(path, refs):
                print("  referenced, glued by no call:", " ".join(missing))
    return 1 if unused or undefined or duplicated else 0


if __name__ == "__main__":
    sys.exit(main())
