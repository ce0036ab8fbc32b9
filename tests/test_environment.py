"""environment.yml, pyproject.toml, constraints.txt and requirements-models.txt stay in sync."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
MODELS_HEADER = "# models (pip install --no-deps):"


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def direct_requirements() -> dict[str, Requirement]:
    """pyproject's dependencies plus the dev extra, by canonical name."""
    project = pyproject()["project"]
    lines = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def pip_section() -> list[str]:
    """The `pip:` list of environment.yml."""
    for item in environment()["dependencies"]:
        if isinstance(item, dict) and "pip" in item:
            return [str(line).strip() for line in item["pip"]]
    raise AssertionError("environment.yml has no `pip:` section")


def conda_packages() -> list[str]:
    return [item for item in environment()["dependencies"] if isinstance(item, str)]


def environment_requirements() -> dict[str, Requirement]:
    """The package lines of the pip section (options and the editable install left out)."""
    lines = [line for line in pip_section() if not line.startswith("-")]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a pip requirements/constraints file, by canonical name."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"{path.name}: not an exact pin: {raw!r}"
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def documented_models() -> dict[str, str]:
    """The model packages that environment.yml's comment lists under MODELS_HEADER."""
    lines = (REPO / "environment.yml").read_text().splitlines()
    assert MODELS_HEADER in lines, f"environment.yml lacks the comment line {MODELS_HEADER!r}"
    found: dict[str, str] = {}
    for line in lines[lines.index(MODELS_HEADER) + 1 :]:
        match = re.fullmatch(r"#\s+([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if not match:
            break
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def test_python_version_matches_requires_python() -> None:
    pythons = [p for p in conda_packages() if re.match(r"python([=<>!~ ]|$)", p)]
    assert pythons == ["python=3.11"], f"environment.yml should pin python=3.11, found {pythons}"
    assert pyproject()["project"]["requires-python"] == ">=3.11"
    assert "pip" in conda_packages()


def test_pip_section_installs_the_project_with_the_lock_file() -> None:
    section = pip_section()
    assert "-c constraints.txt" in section, "the pip section must apply the lock file"
    assert "-e .[dev]" in section, "the pip section must install the project with its dev extra"


def test_same_dependencies_as_pyproject() -> None:
    expected, listed = direct_requirements(), environment_requirements()
    assert sorted(listed) == sorted(expected), (
        f"only in pyproject.toml: {sorted(set(expected) - set(listed))}; "
        f"only in environment.yml: {sorted(set(listed) - set(expected))}"
    )
    for name, req in expected.items():
        assert str(listed[name]) == str(req), f"{name}: pyproject says {req}, environment.yml says {listed[name]}"


def test_same_torch_pin_everywhere() -> None:
    torch = str(direct_requirements()["torch"].specifier)
    assert torch.startswith("=="), f"pyproject.toml should pin torch exactly, has {torch!r}"
    assert str(environment_requirements()["torch"].specifier) == torch
    assert "==" + pins(REPO / "constraints.txt")["torch"] == torch


def test_constraints_pin_every_direct_dependency() -> None:
    locked = pins(REPO / "constraints.txt")
    missing = sorted(set(direct_requirements()) - set(locked))
    assert not missing, f"constraints.txt does not pin: {missing}"
    for name, req in direct_requirements().items():
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"constraints.txt pins {name}=={locked[name]}, outside pyproject's {req}"
        )


def test_model_packages_are_pinned_and_documented() -> None:
    models = pins(REPO / "requirements-models.txt")
    assert models, "requirements-models.txt lists no model package"
    assert documented_models() == models, "environment.yml's model comment differs from requirements-models.txt"
    overlap = sorted(set(models) & set(pins(REPO / "constraints.txt")))
    assert not overlap, f"model packages also in constraints.txt (they are installed --no-deps): {overlap}"


@pytest.mark.parametrize("name", ["environment.yml", "pyproject.toml", "constraints.txt", "requirements-models.txt"])
def test_files_exist(name: str) -> None:
    assert (REPO / name).is_file()
