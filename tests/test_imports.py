"""The package's modules import each other without a cycle, function-level imports included."""

import ast
import os

from .conftest import ROOT

PACKAGE = "lns_larq"


def _modules():
    """`{module name: path}` of every module of the package."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                name = os.path.relpath(path[: -len(".py")], ROOT).replace(os.sep, ".")
                modules[name.removesuffix(".__init__")] = path
    return modules


def _imported(node, module, is_package, modules):
    """The modules of `modules` that an `import` or `from ... import` statement imports.

    `from a import b` imports the module `a.b` if there is one, else the name `b`
    defined in `a`. (A module's parent packages, which Python imports first, do not
    count: they never need the module to be complete.)
    """
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: from the module's package, `level - 1` packages up
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def import_graph():
    """`{module: modules of the package it imports}`, at any depth of its code."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith("__init__.py")
        graph[module] = {
            name
            for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
            for name in _imported(node, module, is_package, modules)
            if name in modules and name != module
        }
    return graph


def find_cycle(graph):
    """A cycle `[a, b, ..., a]` of `graph`, or None."""
    state = {}  # module -> "open" while on the current path, "done" after

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [node])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_function_level_imports():
    graph = import_graph()
    assert "lns_larq.keras_utils" in graph["lns_larq.lns"]
    assert len(graph) > 20


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_export_keeps_its_public_names():
    """`lns_larq.export` is a package now; what `import lns_larq.export` gave is still there."""
    import lns_larq.export as export

    names = ["Agreement", "ExportError", "ExportReport", "bake", "cifar10_test_images", "constant_kernels",
             "deployable_params", "export_tflite", "float_copy", "interpreter", "load_model", "op_counts", "verify"]
    assert set(names) <= set(export.__all__) and all(callable(getattr(export, name)) for name in names)
