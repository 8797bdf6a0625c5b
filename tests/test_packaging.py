"""pyproject.toml and environment.yml must list the same dependencies."""
import re
import tomllib

import yaml
from packaging.requirements import Requirement

from conftest import ROOT

CONDA_ONLY = {"python", "pip"}


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {_normalize(Requirement(r)) for r in listed}


def environment_requirements():
    entries = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = [e for e in entries if isinstance(e, str)]
    pip = next(e["pip"] for e in entries if isinstance(e, dict))
    names = [e for e in conda if re.match(r"[\w.-]+", e).group() not in CONDA_ONLY]
    names += [e for e in pip if not e.startswith("-e")]
    return {_normalize(Requirement(e)) for e in names}


def _normalize(requirement):
    return requirement.name.lower().replace("_", "-"), str(requirement.specifier)


def test_environment_yml_and_pyproject_agree():
    assert environment_requirements() == pyproject_requirements()


def test_environment_yml_installs_the_project_itself():
    entries = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(e["pip"] for e in entries if isinstance(e, dict))
    assert "-e .[dev]" in pip


def test_torch_is_pinned_to_the_cached_wheels():
    assert ("torch", "==2.14.1") in pyproject_requirements()
    assert ("torchvision", "==0.29.1") in pyproject_requirements()
