"""The import direction between layers (read from the source with ``ast``, so imports inside
functions count too): components below the stages never reach up into ``rlhfkit.stages``; only the
stages themselves, the command line and the rounds orchestrator may import them. And no import cycle at module level."""

from __future__ import annotations

import ast
from pathlib import Path

import rlhfkit

PACKAGE = Path(rlhfkit.__file__).parent
# rlhfkit.rounds runs whole stages one after another (like stages/pipeline.py): an orchestrator above
# the stages, not a component below them.
ALLOWED_TO_IMPORT_STAGES = ("rlhfkit.stages", "rlhfkit.cli", "rlhfkit.rounds")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imported(tree: ast.AST, module: str, is_package: bool = False) -> set[str]:
    """Every module name ``tree`` imports anywhere (``import a.b``, ``from a import b`` as ``a`` and
    ``a.b``, relative imports resolved, ``importlib.import_module("a.b")`` with a literal)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def _is_stages(name: str) -> bool:
    return name == "rlhfkit.stages" or name.startswith("rlhfkit.stages.")


def _allowed(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED_TO_IMPORT_STAGES)


def test_the_import_scanner_sees_function_level_relative_and_dynamic_imports():
    tree = ast.parse("def f():\n    from rlhfkit.stages.common import say\n"
                     "def g():\n    from ..stages import sft\n"
                     "import importlib\nimportlib.import_module('rlhfkit.stages.dpo')\n")
    found = {n for n in imported(tree, "rlhfkit.rl.loop") if _is_stages(n)}
    assert found == {"rlhfkit.stages.common", "rlhfkit.stages.common.say", "rlhfkit.stages",
                     "rlhfkit.stages.sft", "rlhfkit.stages.dpo"}


def test_no_module_below_the_stages_imports_rlhfkit_stages():
    offenders = []
    for module, tree in modules().items():
        if _allowed(module):
            continue
        is_package = (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()
        hits = sorted(n for n in imported(tree, module, is_package) if _is_stages(n))
        if hits:
            offenders.append(f"{module} imports {', '.join(hits)}")
    assert not offenders, "components must not import the stages layer:\n" + "\n".join(offenders)


def _top_level_imports(tree: ast.Module, module: str, known: set[str], is_package: bool) -> set[str]:
    """rlhfkit modules that ``module``'s module-level statements import, those under
    ``if TYPE_CHECKING`` included (a cycle there is still two modules that need each other). A
    module's own parent packages do not count (``from rlhfkit.data import hh`` inside
    ``rlhfkit.data.formats`` is the normal way to reach a sibling)."""
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.If)):
            out.update(n for n in imported(node, module, is_package)
                       if n in known and n != module and not module.startswith(n + "."))
    return out


def test_no_import_cycle_at_module_level():
    trees = modules()
    known = set(trees)
    graph = {m: _top_level_imports(t, m, known, (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists())
             for m, t in trees.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
