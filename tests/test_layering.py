"""The package's layers point one way: cli → train, report → eval, data, models → physics → io,
geometry. A module may import its own subpackage and any lower layer, never a higher one or a
sibling of its own layer (that would make a cycle possible). The check reads every import
statement, top-level or inside a function, with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cryoai"

# rank of each top-level module or subpackage of cryoai; imports go to strictly lower ranks
LAYERS = {
    "__main__": 7, "cli": 6,
    "train": 5, "report": 5,
    "eval": 4, "data": 4, "simulate": 4,
    "models": 3, "losses": 3, "phantom": 3, "junk": 3,
    "physics": 2,
    "io": 1, "geometry": 1, "conventions": 1,
    "errors": 0, "__init__": 0,
}


def _unit(module: str) -> str:
    """``cryoai.train.trainer`` → ``train``; ``cryoai`` → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, cryoai module) for every import of the package in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "cryoai":
            if node.module == "cryoai":  # from cryoai import train → the names are modules or __init__'s
                found += [(node.lineno, f"cryoai.{a.name}" if a.name in LAYERS else "cryoai") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "cryoai"]
    return found


def back_edges(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if own not in LAYERS:
            problems.append(f"{rel}: {own} has no layer in LAYERS")
            continue
        for line, module in imports(path):
            target = _unit(module)
            if target == own:
                continue
            if target not in LAYERS:
                problems.append(f"{rel}:{line} imports {module}, which has no layer")
            elif LAYERS[target] >= LAYERS[own]:
                problems.append(f"{rel}:{line} imports {module} ({own} → {target} points up or sideways)")
    return problems


def test_every_import_points_down():
    assert back_edges() == []


def test_a_back_edge_is_caught(tmp_path):
    """The check itself: a physics module importing the trainer is reported."""
    (tmp_path / "physics").mkdir()
    (tmp_path / "physics" / "bad.py").write_text("def f():\n    from cryoai.train.trainer import Trainer\n")
    (tmp_path / "io").mkdir()
    (tmp_path / "io" / "fine.py").write_text("from cryoai.errors import InputError\nimport cryoai.io.mrc\n")
    assert back_edges(tmp_path) == ["physics/bad.py:2 imports cryoai.train.trainer (physics → train points up or sideways)"]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_name_real_modules(name):
    assert (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()
