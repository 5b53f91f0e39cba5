"""config/README.md documents every config key, and every default it states is the code's."""

import re

import pytest
import yaml

from soften.pipeline.attack_kinds import KIND_PARAMS
from soften.pipeline.config import SMOKE, TRAINING_DEFAULTS, schema
from soften.training.methods import COMPONENT_DEFAULTS


@pytest.fixture(scope="module")
def readme(repo):
    return (repo / "config" / "README.md").read_text()


def schema_keys(node, out):
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            out.add(name)
            schema_keys(sub, out)
        for key in ("definitions", "additionalProperties", "items"):
            sub = node.get(key)
            if isinstance(sub, dict):
                for v in (sub.values() if key == "definitions" else [sub]):
                    schema_keys(v, out)
    return out


def test_every_key_is_documented(readme):
    keys = schema_keys(schema(), set()) | set(TRAINING_DEFAULTS) | set(COMPONENT_DEFAULTS)
    keys |= {k for params in COMPONENT_DEFAULTS.values() for k in params}
    keys |= {k for params in KIND_PARAMS.values() for k in params} | set(KIND_PARAMS)
    prose = re.sub(r"```.*?```", "", readme, flags=re.S)
    quoted = {t for span in re.findall(r"`([^`]+)`", prose) for t in re.split(r"[^A-Za-z0-9_-]+", span)}
    assert not sorted(keys - quoted), f"config/README.md does not mention {sorted(keys - quoted)}"


def test_training_defaults_in_the_table_are_the_code_defaults(readme):
    section = readme.split("## Training")[1].split("## Methods")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.M))
    assert set(rows) == set(TRAINING_DEFAULTS)
    for key, value in TRAINING_DEFAULTS.items():
        shown = yaml.safe_load(rows[key])
        assert (float(shown) == value) if isinstance(value, float) else shown == value, key


def test_method_defaults_in_the_table_are_the_code_defaults(readme):
    table = readme.split("## Methods")[1].split("## Variants")[0]
    for component, params in COMPONENT_DEFAULTS.items():
        row = next(line for line in table.splitlines() if line.startswith("|") and f"`{component}`" in line.split("|")[1])
        for key, value in params.items():
            if isinstance(value, dict):
                shown = "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
            else:
                shown = "null" if value is None else value
            assert f"`{key}: {shown}" in row, (component, key)


def test_smoke_scale_numbers(readme):
    section = readme.split("## Scale")[1]
    s = SMOKE["subset"]
    assert f"{s['train']} training, {s['val']} validation and {s['test']} test images" in section
    assert f"{SMOKE['epochs']} epochs" in section and f"batch {SMOKE['batch_size']}" in section
    assert f"capped at {SMOKE['attack_steps']} steps" in section
    assert f"1/{round(1 / SMOKE['width_factor'])} of its" in section and f"width_factor: {SMOKE['width_factor']}" in section
