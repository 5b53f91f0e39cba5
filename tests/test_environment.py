"""environment.yml's pip section and pyproject.toml must pin the same packages."""

import re
import tomllib

import yaml


def normalise(req):
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_matches_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    wanted = dict(map(normalise, project["dependencies"] + project["optional-dependencies"]["dev"]))
    env = yaml.safe_load((repo / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = dict(normalise(r) for r in pip if not r.startswith("-e"))
    assert listed == wanted
