"""Imports point one way: from a higher layer of soften to a lower one, never back up.

The layers, lowest first (a module may import its own layer and those below):

0. foundations, no soften imports above them: the package itself, io, devices,
   noise, errors, codedeps, layout, attack_kinds (the attack vocabulary), attacks/ (PGD, CW);
1. the things trained and reported on: models/ (incl. averaging, bn, checkpoint),
   data/, published, tables, plots, verdicts and the verdict page;
2. label refiners and evaluation: labels/ (they use models' EMA, BN helpers and
   checkpoint loading), evaluation/;
3. training/ (objectives use the refiners' interface);
4. config (validates methods with training.methods, datasets with data.sources);
5. what is built from a config: show, jobs, dvc_pipeline;
6. stages (one function per pipeline stage; imports the library, never config);
7. __main__ (the command line); the workflow/ rules sit above it.

Every import counts, also those inside functions. A second check keeps the
module graph between these units acyclic, so "same layer" never hides a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = [
    {"soften", "soften.io", "soften.devices", "soften.data.noise", "soften.errors", "soften.pipeline.codedeps", "soften.pipeline.layout",
     "soften.pipeline.lifetime",
     "soften.pipeline.attack_kinds", "soften.attacks"},
    {"soften.models", "soften.data", "soften.reporting.published", "soften.reporting.tables", "soften.reporting.table_html", "soften.reporting.plots",
     "soften.reporting.verdicts", "soften.reporting.verdict_page"},
    {"soften.labels", "soften.evaluation"},
    {"soften.training"},
    {"soften.pipeline.config"},
    {"soften.tools.show", "soften.pipeline.jobs", "soften.pipeline.dvc_pipeline", "soften.tools.robustbench"},
    {"soften.pipeline.stages"},
    {"soften.tools.bench", "soften.tools.plan", "soften.tools.cluster"},   # commands that run stages or read benchmarks
    {"soften.__main__"},
]


def unit(module: str) -> str:
    """``soften.training.loop`` -> ``soften.training``: the module or package a layer lists."""
    return ".".join(module.split(".")[:2])


def layer(module: str) -> int:
    for i, units in enumerate(LAYERS):
        if unit(module) in units:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted((SRC / "soften").rglob("*.py")):
        parts = f.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(module: str, path: Path) -> set[str]:
    """soften modules ``module`` imports anywhere (module level or inside functions)."""
    found = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m == "soften" or m.startswith("soften.")}


MODULES = modules()
EDGES = {(m, t) for m, p in MODULES.items() for t in imports(m, p)}


def test_every_module_has_a_layer():
    for m in MODULES:
        layer(m)


def test_imports_never_point_up():
    up = sorted(f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})" for a, b in EDGES if layer(b) > layer(a))
    assert not up, "\n".join(up)


def test_units_import_each_other_without_cycles():
    graph: dict[str, set[str]] = {}
    for a, b in EDGES:
        if unit(a) != unit(b):
            graph.setdefault(unit(a), set()).add(unit(b))
    state: dict[str, int] = {}

    def visit(u: str, path: list[str]) -> None:
        if state.get(u) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(u):] + [u]))
        if state.get(u) == 2:
            return
        state[u] = 1
        for v in sorted(graph.get(u, ())):
            visit(v, path + [u])
        state[u] = 2

    for u in sorted(graph):
        visit(u, [])


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    """The detector itself, on the cycle this layering replaced: evaluation importing config."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from soften.pipeline.config import load_config\n    from ..io import save_json\n")
    found = imports("soften.evaluation.fake", fake)
    assert found == {"soften.pipeline.config", "soften.io"}
    assert layer("soften.pipeline.config") > layer("soften.evaluation.fake") >= layer("soften.io")
