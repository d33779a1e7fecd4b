"""The import contract: libraries below, the app on top, no cycles, a controller side without heavy packages.

Read from the source (every import statement, at any depth of a module), so an import hidden in a
function counts as much as one at the top. The rules:

- `scenarios` imports no other genba package; `perception` none either; `sim` only `scenarios` and
  `perception`; `policies` only `sim`, `scenarios`, `perception` and the bridge's wire contract
  (`bridge.spec`, `bridge.errors`); `bridge` no other genba package. Only the app (`genba`) imports
  everything, and no library imports the app.
- The controller side of the bridge, and perception, import only the standard library, numpy, pyzmq,
  msgpack, OpenCV and themselves: a robot or cell PC runs them without torch, PyBullet or SB3.
- No two modules import each other, directly or through others.
- A library imports its in-repo dependencies at the top of the module, where a reader sees them,
  unless the import line says why it waits (a `# lazy:` comment: a heavy dependency loaded on use).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("scenarios", "perception", "sim", "policies", "bridge", "genba")
ALLOWED = {  # package -> the other genba packages (or single modules) it may import
    "scenarios": set(),
    "perception": set(),
    "sim": {"scenarios", "perception"},
    "policies": {"sim", "scenarios", "perception", "bridge.spec", "bridge.errors"},
    "bridge": set(),
    "genba": {"scenarios", "perception", "sim", "policies", "bridge"},
}
CONTROLLER_SIDE = (
    "bridge.client", "bridge.controller", "bridge.docgen", "bridge.endpoints", "bridge.errors", "bridge.gantry", "bridge.images",
    "bridge.keys",
    "bridge.latency", "bridge.limits", "bridge.protocol", "bridge.realtime", "bridge.safety", "bridge.servo",
    "bridge.spec", "bridge.watchdog",
    "bridge.hses", "bridge.hses.client", "bridge.hses.errors", "bridge.hses.packets", "bridge.hses.payloads", "bridge.hses.units",
    "bridge.hses.adapter", "bridge.hses.cell_link",
)
CONTROLLER_THIRD_PARTY = {"numpy", "zmq", "msgpack", "cv2"}
HEAVY = ["torch", "pybullet", "gymnasium", "onnxruntime", "stable_baselines3", "pydantic", "typer",
         "scenarios", "sim", "policies", "genba"]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path, modules: set[str]) -> list[tuple[str, bool]]:
    """(imported name, at top level) for every import in the file; in-repo names resolve to the module."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source, str(path))
    top_level = {id(node) for node in _top_level_statements(tree)}
    top_level |= {id(node) for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                  and "# lazy:" in lines[node.lineno - 1]}  # a deferred import that says why counts as seen
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                target = f"{base}.{alias.name}"
                found.append((target if target in modules else base, id(node) in top_level))
    return found


def _top_level_statements(tree: ast.Module):
    """Module-level statements, including those inside module-level try/if blocks (optional imports)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.Try, ast.If)):
            todo += node.body + node.orelse + getattr(node, "finalbody", []) + [s for h in getattr(node, "handlers", []) for s in h.body]


def import_graph(root: Path) -> dict[str, list[tuple[str, bool]]]:
    files = {module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        graph[name] = [(target, top) for target, top in imports_of(path, root, modules)
                       if target.split(".")[0] in PACKAGES]
    return graph


def layer_violations(graph) -> list[str]:
    bad = []
    for module, targets in graph.items():
        package = module.split(".")[0]
        for target, _ in targets:
            other = target.split(".")[0]
            if other == package:
                continue
            allowed = ALLOWED[package]
            if other not in allowed and not any(target == a or target.startswith(a + ".") for a in allowed):
                bad.append(f"{module} imports {target}")
    return sorted(set(bad))


def cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    edges = {m: sorted({t for t, _ in targets if t in graph and t != m}) for m, targets in graph.items()}
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def hidden_imports(graph) -> list[str]:
    """In-repo imports inside functions of library modules (the app's commands may load libraries on use)."""
    return sorted({f"{module} imports {target} inside a function" for module, targets in graph.items()
                   if not module.startswith("genba.") for target, top in targets if not top})


def deployable_modules(root: Path) -> list[str]:
    """The controller side of the bridge, and every module of perception/."""
    perception = root / "perception"
    return list(CONTROLLER_SIDE) + sorted(module_name(p, root) for p in perception.rglob("*.py")) if perception.is_dir() else list(CONTROLLER_SIDE)


def controller_side_violations(root: Path) -> list[str]:
    stdlib = set(sys.stdlib_module_names)
    deployable = deployable_modules(root)
    modules = {module_name(p, root) for pkg in ("bridge", "perception") if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py")}
    bad = []
    for name in deployable:
        path = root / (name.replace(".", "/") + ".py")
        if not path.is_file():
            path = root / name.replace(".", "/") / "__init__.py"
            if not path.is_file():
                continue
        for target, _ in imports_of(path, root, modules):
            head = target.split(".")[0]
            if head in stdlib or head in CONTROLLER_THIRD_PARTY or target in deployable:
                continue
            bad.append(f"{name} imports {target}")
    return sorted(set(bad))


GRAPH = import_graph(ROOT)


def test_libraries_import_only_the_layers_below_them():
    assert layer_violations(GRAPH) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_libraries_import_their_in_repo_dependencies_at_the_top():
    assert hidden_imports(GRAPH) == []


def test_controller_side_and_perception_import_only_numpy_pyzmq_msgpack_opencv_and_themselves():
    assert set(CONTROLLER_SIDE) <= set(GRAPH), "a controller-side module listed here no longer exists"
    assert controller_side_violations(ROOT) == []


def test_controller_side_and_perception_load_without_heavy_packages():
    code = (
        "import importlib, json, sys\n"
        f"for name in {deployable_modules(ROOT)!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for pkg in PACKAGES:
        (root / pkg).mkdir(exist_ok=True)
        (root / pkg / "__init__.py").touch()
    return root


@pytest.mark.parametrize("files, check, expected", [
    ({"sim/world.py": "from policies.train import fit\n", "policies/train.py": "def fit(): pass\n"},
     layer_violations, ["sim.world imports policies.train"]),
    ({"bridge/server.py": "import genba.cli\n", "genba/cli.py": ""}, layer_violations, ["bridge.server imports genba.cli"]),
    ({"policies/bc.py": "def f():\n    from policies import train\n", "policies/train.py": "from policies.bc import f\n"},
     cycles, [["policies.bc", "policies.train"]]),
    ({"sim/env.py": "def f():\n    from scenarios import load\n", "scenarios/load.py": ""},
     hidden_imports, ["sim.env imports scenarios.load inside a function"]),
    ({"sim/env.py": "def f():\n    from scenarios import load  # lazy: heavy\n", "scenarios/load.py": ""}, hidden_imports, []),
])
def test_the_checks_see_what_they_forbid(tmp_path, files, check, expected):
    """Each rule, run on a small tree that breaks it, reports exactly that (the rules cannot pass vacuously)."""
    root = write(tmp_path, files)
    assert check(import_graph(root)) == expected


def test_the_controller_side_check_sees_a_heavy_import(tmp_path):
    root = write(tmp_path, {"bridge/safety.py": "import numpy\nimport torch\nfrom bridge import limits\n", "bridge/limits.py": ""})
    assert controller_side_violations(root) == ["bridge.safety imports torch"]
