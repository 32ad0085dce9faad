"""The shape a newcomer can rely on: every module imports on its own, no import cycles (function-level
imports included), modules of about 300 lines at most and functions of about 60."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from cvtools.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "cvtools"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that `name` imports anywhere in its body (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:  # the module itself, or the package a name came from
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != name:
                found.add(t)
    return found


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    names = sorted(modules())
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\nprint(len(sys.argv) - 1)"
    proc = subprocess.run(
        [sys.executable, "-c", code, *names], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(len(names))


def test_the_app_starts_without_scikit_learn() -> None:
    """scikit-learn (with SciPy) costs 2-3 s of every start-up; only training, calibration and the
    Anomalies jobs need it, so they import it where they use it."""
    code = (
        "import sys\nfrom cvtools.web import create_app\n"
        "print(sorted(m for m in sys.modules if m.startswith('sklearn')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_no_import_cycles() -> None:
    mods = modules()
    graph = {n: imported(n, p, set(mods)) for n, p in mods.items()}
    # A package's __init__ that re-exports its parts is not a cycle with them: edges from a module to
    # its own parent package are the import machinery, not a design dependency.
    graph = {n: {t for t in deps if not n.startswith(t + ".")} for n, deps in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append([*stack[stack.index(m) :], m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_modules_and_functions_stay_small() -> None:
    big_modules, big_functions = [], []
    for name, path in modules().items():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            big_modules.append(f"{name} ({lines} lines)")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big_functions.append(f"{name}.{node.name} ({length} lines)")
    assert not big_modules, f"modules over {MAX_MODULE_LINES} lines: {big_modules}"
    assert not big_functions, f"functions over {MAX_FUNCTION_LINES} lines: {big_functions}"
