"""Every public function, class and method of the modules below says what it takes and
gives (inputs, outputs, units). The library's other modules follow as they are reworked."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "soften"
DOCUMENTED = [
    "__main__.py", "pipeline/codedeps.py", "pipeline/config.py", "pipeline/dvc_pipeline.py", "errors.py", "io.py", "pipeline/jobs.py", "pipeline/layout.py",
    "data/noise.py", "reporting/published.py", "tools/show.py", "pipeline/stages.py", "reporting/tables.py", "attacks", "data", "models",
]


def files():
    for name in DOCUMENTED:
        path = SRC / name
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


@pytest.mark.parametrize("path", list(files()), ids=lambda p: str(p.relative_to(SRC)))
def test_public_functions_have_docstrings(path):
    tree = ast.parse(path.read_text())
    missing = []
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    for node in tree.body:
        members = [node] + (node.body if isinstance(node, ast.ClassDef) else [])
        for n in members:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_") and not ast.get_docstring(n):
                missing.append(n.name)
    assert not missing, f"{path.relative_to(SRC)}: no docstring on {missing}"
