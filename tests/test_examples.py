"""The code examples of the docstrings, the README and docs/ stay true to the API:
each parses, imports lns_larq before TensorFlow or Larq (which need the Keras 2 it
selects), and every `lns_larq` name it uses exists. The README's main snippet is
also run (tests/test_readme.py); the others need data, trained models or an
ImageNet copy, so they are checked here without running them."""

import ast
import glob
import importlib
import os
import re

import pytest

from .conftest import ROOT

BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _examples():
    """(where, code) of every ```python block of lns_larq's docstrings and the Markdown pages."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "lns_larq", "**", "*.py"), recursive=True)):
        tree = ast.parse(open(path).read())
        for node in [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))]:
            doc = ast.get_docstring(node, clean=True) or ""
            for i, code in enumerate(BLOCK.findall(doc)):
                found.append((f"{os.path.relpath(path, ROOT)}:{getattr(node, 'name', '<module>')}:{i}", code))
    for path in [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                                    recursive=True))]:
        for i, code in enumerate(BLOCK.findall(open(path).read())):
            found.append((f"{os.path.relpath(path, ROOT)}:{i}", code))
    return found


EXAMPLES = _examples()


def _dotted(node):
    """'a.b.c' of an attribute chain rooted at a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def _resolve(dotted):
    """Import or get `dotted` (e.g. 'lns_larq.lns.warm_start'), raising if it is missing."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if not hasattr(obj, part):
            obj = importlib.import_module(".".join(parts[: i + 1]))  # a submodule not yet imported
        else:
            obj = getattr(obj, part)
    return obj


def test_the_examples_were_found():
    # Fails if the extraction finds nothing (the checks below would then pass vacuously).
    assert len(EXAMPLES) > 40 and any(where.startswith("README.md") for where, _ in EXAMPLES)


@pytest.mark.parametrize("where,code", EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_example_imports_lns_larq_first_and_uses_names_that_exist(where, code):
    tree = ast.parse(code, where)
    imports = [(node.lineno, alias.name if isinstance(node, ast.Import) else node.module)
               for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
               for alias in (node.names if isinstance(node, ast.Import) else node.names[:1])]
    modules = [name.split(".")[0] for _, name in sorted(imports) if name]
    if {"tensorflow", "larq", "tf_keras"} & set(modules):
        assert "lns_larq" in modules, f"{where} imports TensorFlow or Larq but not lns_larq"
        first_stack = min(modules.index(m) for m in ("tensorflow", "larq", "tf_keras") if m in modules)
        assert modules.index("lns_larq") < first_stack, f"{where} imports TensorFlow or Larq before lns_larq"
    # Names taken from lns_larq: `from lns_larq(.x) import y` and every lns_larq.a.b chain.
    aliases = {alias.asname or alias.name: f"{node.module}.{alias.name}" for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lns_larq"
               for alias in node.names}
    used = set(aliases.values())
    for node in ast.walk(tree):
        dotted = _dotted(node) if isinstance(node, ast.Attribute) else None
        if dotted:
            head, _, rest = dotted.partition(".")
            if head == "lns_larq":
                used.add(dotted)
            elif head in aliases:
                used.add(f"{aliases[head]}.{rest}")
    for name in sorted(used):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            pytest.fail(f"{where} uses {name}, which lns_larq does not have")
