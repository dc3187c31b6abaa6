"""The import graph of `prediff` and `prediff_models` (docs/design.md, "Layers"): no cycles between modules, and no
module importing one on a higher layer. Every `import` counts, also those inside functions (a deferred import is
still a dependency)."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: folder → import name (editable install: prediff_cli/ is `prediff`, models/ is `prediff_models`)
PACKAGES = {"prediff_cli": "prediff", "models": "prediff_models"}


def declared_layers():
    """The layers of docs/design.md's "Layers" section, lowest first: a list of lists of module prefixes (each
    numbered item's backquoted names)."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = re.search(r"^## Layers\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, "docs/design.md has no '## Layers' section"
    items = re.split(r"^\d+\. ", section.group(1), flags=re.M)[1:]  # an item runs on to the next number
    layers = [re.findall(r"`([\w.]+)`", item.split("\n\n")[0]) for item in items]
    assert layers and all(layers), "each numbered item of the Layers section names its modules in backquotes"
    return layers


def modules():
    """{import name: path} of every module under the two source folders."""
    found = {}
    for folder, name in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([name] + parts)] = path
    return found


def imports_of(module: str, path: Path, known) -> set:
    """The modules of `known` that `module` (at `path`) imports, anywhere in the file; `from a import b` counts as
    an import of `a.b` where that is a module, else of `a`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module
            names += [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def import_graph():
    known = modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def layer_of(module: str, layers) -> int:
    """The layer whose longest prefix matches `module`."""
    best, index = -1, None
    for i, prefixes in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_every_module_has_a_declared_layer():
    layers = declared_layers()
    assert [m for m in modules() if layer_of(m, layers) is None] == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_higher_layer():
    layers = declared_layers()
    upward = sorted(f"{a} (layer {layer_of(a, layers) + 1}) imports {b} (layer {layer_of(b, layers) + 1})"
                    for a, targets in import_graph().items() for b in targets
                    if layer_of(b, layers) > layer_of(a, layers))
    assert upward == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected


def test_deferred_and_relative_imports_count(tmp_path):
    known = {"p", "p.a", "p.b", "p.c"}
    source = tmp_path / "a.py"
    source.write_text("from . import b\n\ndef f():\n    from .c import thing\n")
    assert imports_of("p.a", source, known) == {"p.b", "p.c"}
