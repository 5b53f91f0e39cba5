"""Which source files each stage runs, and a hash of them: what reruns a job when code changes.

A job is ``python -m soften STAGE --spec ...``. The code it runs is every soften
module that process imports: ``soften/__main__.py`` and its module-level imports,
the imports inside ``soften.pipeline.stages.STAGE``, and, transitively, the module-level
imports of each module reached (importing ``a.b.c`` also runs the packages ``a``
and ``a.b``). Three rules make the static picture match what Python executes:

- imports inside *library* functions are not followed: a library function that
  imports lazily (``soften.pipeline.config``'s checks, an evaluation helper) either runs
  code the process has already imported at module level, or is not on the job's
  path (``tests/test_codedeps.py`` checks this against ``python -X importtime``
  on every stage of a real run);
- a string constant naming a soften module (``"soften.data.cifar"``, as passed to
  ``importlib.import_module``) counts as an import of it;
- a string constant naming a package data file (``"reporting/reference/paper_numbers.yaml"``)
  makes that file part of the code of the module that names it.

Snakemake passes :func:`code_hash` as a rule parameter (its ``params`` rerun trigger
then reruns exactly the jobs whose code changed); the generated ``dvc.yaml`` lists
:func:`stage_files` as each stage's dependencies. Both come from here, so both
DAGs agree on what an edit reruns. Imports nothing from soften: it reads source
text and never executes it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

#: The soften package directory these analyses read.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE = "soften"
#: Modules every job runs first: the package, its command line, and the process-lifetime
#: guard ``main()`` imports for every command (a job ends with the Snakemake that started it).
ENTRY_MODULES = ("soften.__main__", "soften.pipeline.lifetime")
#: The module holding one function per stage (the stage's entry).
STAGES_MODULE = "soften.pipeline.stages"


def stage_names() -> list[str]:
    """The pipeline's stages, in pipeline order: the public functions of soften.pipeline.stages
    (each is also a Snakemake rule and a ``python -m soften`` command of the same name)."""
    return [node.name for node in _tree(STAGES_MODULE).body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def module_file(module: str) -> Path | None:
    """The source file of a soften module (``soften.a.b`` -> ``soften/a/b.py`` or
    ``soften/a/b/__init__.py``); None when it is not a soften module."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(module: str) -> bool:
    f = module_file(module)
    return f is not None and f.name == "__init__.py"


def _parents(module: str) -> list[str]:
    """``soften.a.b`` -> ``['soften', 'soften.a']``: packages Python runs before the module."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _import_targets(module: str, nodes) -> set[str]:
    """soften modules named by these import statements and string constants."""
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PACKAGE + "."):
            found.add(node.value)
    return {m for m in found if module_file(m)}


def _walk_skipping_functions(node):
    """Every node that runs when ``node`` runs, but not the bodies of functions defined in it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            # Decorators and default values run at definition time.
            yield from (n for d in getattr(child, "decorator_list", []) for n in ast.walk(d))
            continue
        yield child
        yield from _walk_skipping_functions(child)


@functools.lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    return ast.parse(module_file(module).read_text(), filename=str(module_file(module)))


@functools.lru_cache(maxsize=None)
def module_imports(module: str) -> frozenset[str]:
    """soften modules that importing ``module`` runs directly (its module-level imports)."""
    return frozenset(_import_targets(module, _walk_skipping_functions(_tree(module))))


def function_imports(module: str, function: str) -> set[str]:
    """soften modules imported inside ``module.function`` (nested functions included)."""
    for node in _tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            return _import_targets(module, ast.walk(node))
    raise ValueError(f"{module} defines no function {function!r}")


# Cached, like module_imports: every Snakemake start hashes all 12 stages' code, and most
# modules belong to several stages (all 12 hashes: 0.52 -> 0.22 CPU-s per start here, the hashes unchanged).
@functools.lru_cache(maxsize=None)
def data_files(module: str) -> frozenset[Path]:
    """Package data files (e.g. ``reporting/reference/paper_numbers.yaml``) that ``module``'s code names."""
    out = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "/" in node.value \
                and not node.value.endswith(".py") and "\n" not in node.value:
            # PACKAGE_DIR / "/proc/cpuinfo" is /proc/cpuinfo: only a file inside the package is its data
            candidate = (PACKAGE_DIR / node.value).resolve()
            if PACKAGE_DIR in candidate.parents and candidate.is_file():
                out.add(candidate)
    return frozenset(out)


def closure(modules: set[str]) -> set[str]:
    """``modules``, their parent packages and everything they import at module level, transitively."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [*_parents(m), *module_imports(m)]
    return seen


def stage_modules(stage: str) -> set[str]:
    """Every soften module a ``python -m soften STAGE --spec ...`` job imports."""
    return closure({*ENTRY_MODULES, STAGES_MODULE, *function_imports(STAGES_MODULE, stage)})


def stage_files(stage: str) -> list[Path]:
    """The source and data files of :func:`stage_modules`, sorted: the stage's code."""
    modules = stage_modules(stage)
    files = {module_file(m) for m in modules} | {f for m in modules for f in data_files(m)}
    return sorted(files)


def code_hash(stage: str) -> str:
    """sha256 over the stage's code (each file's package-relative path and bytes), 16 hex digits."""
    h = hashlib.sha256()
    for f in stage_files(stage):
        h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]
