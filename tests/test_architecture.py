"""The package's shape: no import cycles, layers that only import downwards, imports that do
no work, a public API that resolves, and an environment no import changes.

The import graph is read from the source with `ast`: every `import` and `from ... import`
of a sweepbook module, at module level or inside a function, and every
`importlib.import_module("sweepbook....")` with a literal name. An import of a package
(`sweepbook.tracking`) is an import of its `__init__.py`; `from sweepbook.tracking import
record` is an import of the module `sweepbook.tracking.record`.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

from conftest import ROOT

LIB = ROOT / "lib"
PACKAGE = LIB / "sweepbook"
WARM_UP_ON_IMPORT = "sweepbook.executors.template"  # its import runs the warm-up, on purpose


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: Dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _known(name: str) -> Optional[str]:
    """The sweepbook module `name` names, or its nearest enclosing known module."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.AST, package: str) -> List[str]:
    """Dotted names of the modules one import node (or import_module call) loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        names = []
        for alias in node.names:  # `from pkg import mod` loads pkg.mod; `from mod import x`, mod
            names.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        return names
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
        return [node.args[0].value]
    return []


def import_graph() -> Dict[str, Set[str]]:
    """module -> the sweepbook modules it imports anywhere in its source."""
    graph = {}
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for imported in _imported(node, package):
                if imported.split(".")[0] == "sweepbook" and _known(imported):
                    edges.add(_known(imported))
        graph[name] = edges - {name}
    return graph


def external_imports() -> List[str]:
    """Every non-sweepbook module that sweepbook imports anywhere, by its full dotted name."""
    names = set()
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue
            for imported in _imported(node, package):
                if imported and imported.split(".")[0] != "sweepbook":
                    names.add(imported)
    return sorted(names)


GRAPH = import_graph()


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as a path that starts and ends on the same module, else None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def import_chain(source: str, targets: Set[str]) -> Optional[List[str]]:
    """The shortest chain of imports from `source` to any module in `targets`, else None."""
    seen, frontier = {source}, [[source]]
    while frontier:
        next_frontier = []
        for chain in frontier:
            for target in sorted(GRAPH.get(chain[-1], ())):
                if target in targets:
                    return chain + [target]
                if target not in seen:
                    seen.add(target)
                    next_frontier.append(chain + [target])
        frontier = next_frontier
    return None


def layer(*prefixes: str) -> Set[str]:
    """The modules of these packages (`sweepbook.sweep`) or single modules (`sweepbook.cli`)."""
    return {m for m in MODULES for p in prefixes if m == p or m.startswith(p + ".")}


def python(code: str) -> str:
    """Run `code` in a fresh interpreter; its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=str(ROOT))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# --- the import graph ---

def test_the_graph_sees_module_level_and_function_level_imports():
    assert len(MODULES) > 30 and "sweepbook.tracking.record" in MODULES
    assert "sweepbook.sweep.plan" in GRAPH["sweepbook.sweep.driver"]  # module level
    assert "sweepbook.sweep.recorder" in GRAPH["sweepbook.sweep.driver"]  # inside run_sweep
    assert "sweepbook.tracking.run" in GRAPH["sweepbook.tracking"]  # `from pkg import mod`
    assert "sweepbook.executors.local" in GRAPH["sweepbook.executors.warmup"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_sweepbook_modules():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


LAYERS = [  # (these modules, never import these, not even through another module)
    (layer("sweepbook.compare"), layer("sweepbook.sweep", "sweepbook.executors")),
    (layer("sweepbook.tracking"),
     layer("sweepbook.executors", "sweepbook.sweep", "sweepbook.compare", "sweepbook.cli")),
    (layer("sweepbook.executors"), layer("sweepbook.sweep", "sweepbook.compare", "sweepbook.cli")),
    (layer("sweepbook.config", "sweepbook.schema", "sweepbook.params", "sweepbook.targets",
           "sweepbook.notebook", "sweepbook.env", "sweepbook.redaction"),
     layer("sweepbook.tracking", "sweepbook.executors", "sweepbook.sweep", "sweepbook.compare")),
]


@pytest.mark.parametrize("lower, upper", LAYERS,
                         ids=["compare", "tracking", "executors", "config-schema-params"])
def test_layers_import_only_downwards(lower, upper):
    assert lower and upper
    chains = [import_chain(module, upper) for module in sorted(lower)]
    crossings = [" -> ".join(chain) for chain in chains if chain]
    assert crossings == []


# --- what an import loads ---

def test_importing_compare_loads_nothing_of_sweeps_or_executors():
    loaded = json.loads(python(
        "import json, sys\n"
        "import sweepbook.compare\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sweepbook'))))\n"))
    assert "sweepbook.compare.runs" in loaded
    assert [m for m in loaded if m.startswith(("sweepbook.sweep", "sweepbook.executors"))] == []


def test_importing_sweepbook_itself_does_no_work():
    new = json.loads(python(
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import sweepbook\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"))
    assert "sweepbook" in new
    stdlib = set(sys.stdlib_module_names)
    assert [m for m in new if m != "sweepbook" and m.split(".")[0] not in stdlib] == []


def test_the_run_record_imports_without_mlflow():
    loaded = json.loads(python(
        "import json, sys\n"
        "import sweepbook.tracking.record\n"
        "print(json.dumps(sorted(sys.modules)))\n"))
    assert "sweepbook.tracking.record" in loaded
    assert [m for m in loaded if m.split(".")[0] == "mlflow"] == []


def test_every_public_name_resolves():
    report = json.loads(python(
        "import json, types\n"
        "import sweepbook\n"
        "found, missing = {}, {}\n"
        "for name in sweepbook.__all__:\n"
        "    try:\n"
        "        found[name] = type(getattr(sweepbook, name)).__name__\n"
        "    except Exception as error:\n"
        "        missing[name] = repr(error)\n"
        "print(json.dumps({'all': sweepbook.__all__, 'found': found, 'missing': missing}))\n"))
    assert report["missing"] == {}
    assert len(report["all"]) == len(set(report["all"])) and len(report["found"]) > 10
    assert report["found"]["compare"] == "module" and report["found"]["run_sweep"] == "function"


def test_no_import_changes_the_environment():
    """Every sweepbook module imported, the environment compared before and after.

    The third-party modules sweepbook imports are imported before the snapshot: their own
    import-time effects are theirs (MLflow's import sets _MLFLOW_TELEMETRY_SESSION_ID unless
    MLFLOW_DISABLE_TELEMETRY is set); what is measured is what sweepbook's code does.
    """
    modules = sorted(m for m in MODULES if m != WARM_UP_ON_IMPORT)
    report = json.loads(python(
        "import importlib, json, os, sys\n"
        f"for name in {external_imports()!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        pass\n"
        "before = dict(os.environ)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "after = dict(os.environ)\n"
        "changed = {k: [before.get(k), after.get(k)] for k in set(before) | set(after)\n"
        "           if before.get(k) != after.get(k)}\n"
        f"imported = [m for m in {modules!r} if m in sys.modules]\n"
        "print(json.dumps({'changed': changed, 'imported': imported,\n"
        f"                  'warmed_up': {WARM_UP_ON_IMPORT!r} in sys.modules}}))\n"))
    assert report["imported"] == modules and not report["warmed_up"]
    assert report["changed"] == {}
