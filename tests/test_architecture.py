"""The package keeps the shape docs/architecture.md draws.

- the import rule: every ``import`` of every module (function-level ones included, only
  ``TYPE_CHECKING`` blocks excepted) goes to an allowed layer;
- no module grows past about 400 lines;
- the public API and the entry points resolve.
"""
from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scrfd_ref"
# the layers, lowest first: a layer imports only itself and the layers before it
# (docs/architecture.md draws the same list; every package of scrfd_ref must be in it).
# "suite" is the conformance suite's test modules (scrfd_ref/conformance/suite/): they live
# under conformance so that `pytest --pyargs scrfd_ref.conformance` finds them, and run on
# top of the pytest plugin, so they sit above it.
LAYERS = ("core", "formats", "backends", "detector", "widerface", "device", "quantize", "perf",
          "conformance", "diagnose", "report", "pytest_plugin", "suite", "cli", "root")
ALLOWED: dict[str, set[str]] = {layer: set(LAYERS[:i + 1]) for i, layer in enumerate(LAYERS)}
MAX_LINES = 420


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "scrfd_ref":
        raise ValueError(module)
    if len(parts) == 1 or parts[1] == "__init__":
        return "root"
    if parts[1:3] == ["conformance", "suite"]:
        return "suite"
    return parts[1]


def modules() -> list[tuple[str, Path]]:
    out = []
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE.parent).with_suffix("")
        out.append((".".join(p for p in rel.parts if p != "__init__"), f))
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("scrfd_ref")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                is_pkg = path.name == "__init__.py"
                base = base if is_pkg else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("scrfd_ref"):
                continue
            if target == "scrfd_ref":  # from scrfd_ref import x: x may be a layer
                for a in node.names:
                    if a.name != "__version__":
                        found.append((node.lineno, f"scrfd_ref.{a.name}"))
                continue
            found.append((node.lineno, target))
    return found


@pytest.mark.parametrize("module, path", modules(), ids=[m for m, _ in modules()])
def test_imports_follow_the_layer_rule(module, path):
    layer = layer_of(module)
    bad = [f"line {n}: {target} ({layer_of(target)})" for n, target in imports_of(module, path)
           if layer_of(target) not in ALLOWED[layer] and layer_of(target) != layer]
    assert not bad, f"{module} ({layer}) may import only {sorted(ALLOWED[layer])}: " + \
        "; ".join(bad)


def test_the_rule_would_catch_a_violation(tmp_path):
    """The checker itself can fail: a core module importing the CLI is reported."""
    f = tmp_path / "bad.py"
    f.write_text("def f():\n    from scrfd_ref.cli.app import main\n")
    found = imports_of("scrfd_ref.core.bad", f)
    assert [layer_of(t) for _, t in found] == ["cli"]
    assert "cli" not in ALLOWED["core"]


@pytest.mark.parametrize("module, path", modules(), ids=[m for m, _ in modules()])
def test_no_module_is_over_the_size_limit(module, path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{module} has {n} lines (limit about 400): split it by job"


def test_the_public_api_and_entry_points_resolve():
    import scrfd_ref

    for name in scrfd_ref.__all__:
        assert getattr(scrfd_ref, name) is not None, name
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts")}
    assert callable(scripts["scrfd-ref"].load())
    plugins = [ep for ep in entry_points(group="pytest11") if ep.name == "scrfd_ref"]
    assert plugins and plugins[0].value == "scrfd_ref.pytest_plugin.options"


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (function-level imports included)."""
    known = {m for m, _ in modules()}
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        targets = set()
        for _, target in imports_of(module, path):
            # "from scrfd_ref.pkg import name" may name a module of pkg or an attribute
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted.

    A package's ``__init__`` counts as its own module: a circle through it is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circles():
    circles = import_circles(import_graph())
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_circle_finder_would_catch_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]


def test_every_package_is_a_declared_layer_with_a_docstring():
    """A new subpackage must be placed in LAYERS (and the architecture doc) and say, in its
    ``__init__`` docstring, what it holds and what it may import."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        name = init.parent.name
        assert name in LAYERS, f"scrfd_ref/{name}/ is in no layer of LAYERS"
        assert f"`scrfd_ref/{name}/`" in doc, f"docs/architecture.md does not list {name}/"
        text = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(text.split()) >= 15 and "import" in text, \
            f"scrfd_ref/{name}/__init__.py: a docstring saying what it holds and may import"
