"""Imports point one way: from a higher layer of soften to a lower one, never back up.

The top level of src/soften/ names the layers; lowest first (a module may import its
own layer and those below):

- the floor: the package itself, ``io``, ``errors``, ``devices`` (which device a job
  computes on: the library resolves it inside the job, the pipeline only names the
  placement keys);
- the research library, bottom up: ``attacks/`` (PGD, CW) -> ``models/`` (incl. EMA/SWA,
  BN modes, checkpoints), ``data/`` (incl. label noise) -> ``labels/`` (refiners),
  ``evaluation/`` -> ``training/``;
- ``reporting/``: tables, their HTML page, figures and the published numbers; reads the
  library's result files, imports only the floor and ``data.noise``'s name grammar;
- ``pipeline/``, bottom up: ``layout`` (every path and the experiment grid), ``codedeps``,
  ``lifetime``, ``attack_kinds`` and ``stages`` (one function per stage: the library and
  reporting, never config) -> ``config`` -> ``jobs``, ``dvc_pipeline``;
- ``tools/``: ``show``, ``robustbench`` -> ``bench`` (runs stages) -> ``plan`` (reads bench);
- ``__main__`` (the command line); the workflow/ rules sit above it.

Inside library packages the unit is the package; inside pipeline/, reporting/ and
tools/ it is the module, so their internal order is checked too. Every import counts,
also those inside functions. A second check keeps the graph between units acyclic, so
"same layer" never hides a cycle, and a third holds each package's docstring to the
packages it says it may import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: (top-level group, its layers bottom up); groups are listed bottom up too.
GROUPS = [
    ("floor", [{"soften", "soften.io", "soften.errors", "soften.devices"}]),
    ("library", [{"soften.attacks"},
                 {"soften.models", "soften.data"},
                 {"soften.labels", "soften.evaluation"},
                 {"soften.training"}]),
    ("reporting", [{"soften.reporting", "soften.reporting.published", "soften.reporting.table_html",
                    "soften.reporting.verdicts"},
                   {"soften.reporting.tables", "soften.reporting.plots", "soften.reporting.verdict_page"}]),
    ("pipeline", [{"soften.pipeline", "soften.pipeline.layout", "soften.pipeline.codedeps", "soften.pipeline.lifetime",
                   "soften.pipeline.attack_kinds", "soften.pipeline.stages"},
                  {"soften.pipeline.config"},
                  {"soften.pipeline.jobs", "soften.pipeline.dvc_pipeline"}]),
    ("tools", [{"soften.tools", "soften.tools.show", "soften.tools.robustbench"},
               {"soften.tools.bench"},     # runs stages
               {"soften.tools.plan"},      # reads bench's results
               {"soften.tools.cluster"}]),  # sizes jobs with plan's cost model
    ("command line", [{"soften.__main__"}]),
]
LAYERS = [units for _, layers in GROUPS for units in layers]
#: Packages whose modules are layered one by one (the others count as one unit).
MODULE_UNITS = {"soften.pipeline", "soften.reporting", "soften.tools"}


def unit(module: str) -> str:
    """``soften.training.loop`` -> ``soften.training``; ``soften.pipeline.config`` stays."""
    head = ".".join(module.split(".")[:2])
    return ".".join(module.split(".")[:3]) if head in MODULE_UNITS else head


def layer(module: str) -> int:
    for i, units in enumerate(LAYERS):
        if unit(module) in units:
            return i
    raise AssertionError(f"{module} is in no layer: add it to GROUPS in tests/test_layers.py")


def group(module: str) -> str:
    i = layer(module)
    for name, layers in GROUPS:
        if i < len(layers):
            return name
        i -= len(layers)
    raise AssertionError(module)


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


def test_the_top_level_is_the_groups():
    """A file or folder at the top of src/soften/ is a layer's package or a floor module;
    a new top-level module must be placed in a group (and so in the picture) first."""
    tops = {".".join(m.split(".")[:2]) for m in MODULES}
    packages = {m for m in tops - {"soften"} if (SRC / m.replace(".", "/") / "__init__.py").is_file()}
    assert packages == {"soften.attacks", "soften.models", "soften.data", "soften.labels", "soften.evaluation",
                        "soften.training", "soften.reporting", "soften.pipeline", "soften.tools"}
    assert tops - packages == {"soften", "soften.io", "soften.errors", "soften.devices", "soften.__main__"}


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


def declared_imports(package: str) -> set[str]:
    """The soften packages and modules a package's docstring says it may import: its
    ``May import:`` paragraph, every ``soften.x`` or bare top-level name in it."""
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    match = re.search(r"^May import:(.*?)(?:\n\s*\n|\Z)", doc, re.S | re.M)
    assert match, f"{package}'s docstring has no 'May import:' paragraph"
    names = set(re.findall(r"``(?:soften\.)?([\w.]+)``", match[1]))
    return {f"soften.{n}" for n in names if n != "nothing"}


PACKAGES = ["soften.attacks", "soften.models", "soften.data", "soften.labels", "soften.evaluation",
            "soften.training", "soften.reporting", "soften.pipeline", "soften.tools"]


def undeclared(package: str, edges) -> list[str]:
    """Imports out of ``package`` (its modules' ``edges``) that its docstring does not allow."""
    allowed = declared_imports(package) | {package}
    return [f"{a} imports {b}, which {package}'s docstring does not allow" for a, b in sorted(edges)
            if (a == package or a.startswith(package + ".")) and b != "soften"   # the package's __version__
            and not any(b == x or b.startswith(x + ".") for x in allowed)]


def test_each_package_imports_only_what_its_docstring_declares():
    wrong = [line for package in PACKAGES for line in undeclared(package, EDGES)]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    """The detector itself, on the cycle this layering replaced: evaluation importing config."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from soften.pipeline.config import load_config\n    from ..io import save_json\n")
    found = imports("soften.evaluation.fake", fake)
    assert found == {"soften.pipeline.config", "soften.io"}
    assert layer("soften.pipeline.config") > layer("soften.evaluation.fake") >= layer("soften.io")
    assert group("soften.evaluation.fake") == "library" and group("soften.pipeline.config") == "pipeline"


def test_the_docstring_check_sees_an_undeclared_import():
    """The docstring check itself: reporting reading a training module is not declared."""
    fake = {("soften.reporting.fake", "soften.training.loop"), ("soften.reporting.fake", "soften.io")}
    assert undeclared("soften.reporting", fake) == [
        "soften.reporting.fake imports soften.training.loop, which soften.reporting's docstring does not allow"]
