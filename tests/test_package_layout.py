"""The package's shape: no import cycles, a small public API, and the 0.1 name as a working alias."""
import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bareflow
from bareflow.core.manager import load_plugins
from bareflow.model.layers import LAYER_NAMES
from bareflow.policy.api import decide_all
from bareflow.policy.infos import layer_infos

from buildutil import ROOT

PACKAGE = ROOT / "bareflow"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph():
    """{module: {module it imports}} over bareflow/, counting imports inside functions too.

    `from pkg import name` is an edge to pkg.name when that is a module of the package, else to
    pkg; an edge to a package is an edge to its __init__.
    """
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                    + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 30 and graph["bareflow.policy.table"]     # the walk really found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_public_api_is_exported_from_the_package():
    for name in bareflow.__all__:
        assert getattr(bareflow, name) is not None, name
    assert bareflow.Decision.__module__ == "bareflow.policy.api"
    assert bareflow.FlashTarget.__module__ == "bareflow.flash.target"


def test_importing_the_api_stays_light():
    """A plugin's `import bareflow` must not pull in numpy or llvmlite (scons plugins stays fast)."""
    code = "import sys, bareflow; bareflow.Decision; print(sorted(m for m in ('numpy', 'llvmlite') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


LEGACY_PLUGIN = textwrap.dedent('''
    from bareflow_plugins import hookimpl
    from bareflow_plugins.policy import Decision, Policy

    @hookimpl
    def bareflow_register_policies():
        return [Policy("legacy-o3", "a plugin written for BareFlow 0.1",
                       lambda layer, variables: Decision(["O0", "O3"], [5]))]
''')


def test_a_plugin_written_for_0_1_still_loads(tmp_path, monkeypatch):
    (tmp_path / "legacy_plugin.py").write_text(LEGACY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(DeprecationWarning, match="import from 'bareflow'"):
        sys.modules.pop("bareflow_plugins", None)
        pm = load_plugins({"PLUGINS": "legacy_plugin"}, entry_points=False, environ={})
    costs = {name: (100, 100, 1) for name in LAYER_NAMES}
    decisions = decide_all(pm, "legacy-o3", layer_infos(None, costs, 4), {})
    assert {d.ladder[-1] for d in decisions.values()} == {"O3"}
    import bareflow_plugins.policy
    import bareflow_plugins.fat16
    assert bareflow_plugins.policy.Decision is bareflow.Decision
    assert bareflow_plugins.fat16.split_path("/A.TXT")
