"""The layer contract of the package, read from the source (no import runs).

Every module of ``redis_lifecycle`` belongs to one layer; a module imports
only from its own layer or the ones below it, and no group of modules imports
itself in a circle. Counted: every ``import`` and ``from ... import``
anywhere in a module (inside functions too), ``importlib.import_module()``
with a literal name, and a string naming a module of the package (the lazy
attribute table of ``redis_lifecycle/__init__.py``, modules loaded by name);
not counted: ``if TYPE_CHECKING:`` blocks, which never run.

The layers, from the bottom up, are described in docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "redis_lifecycle"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

#: Bottom first. A module is in the first layer with a matching entry: an exact
#: module name, or a package name ending in ``.*`` (the package and everything in it).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("model", ("_version", "_redact", "events", "errors")),
    (
        "delivery",
        (
            "_accumulate",
            "_histogram",
            "_format",
            "_coroutine_callbacks",
            "_delivery",
            "_redis_event",
            "dispatcher",
            "executor",
            "metrics",
        ),
    ),
    ("hooks", ("_hooks.*", "_capabilities")),
    (
        "facade",
        (
            "",  # the package's __init__: the lazy public facade
            "instrument",
            "_native",
            "_instrument_all",
            "pool",
            "asyncio",
            "_health_shared",
            "_health_asyncio",
            "health",
            "server",
            "testing",
            "pytest_plugin",
        ),
    ),
    ("outside", ("cli", "__main__", "_cli.*", "contrib.*")),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _short(module: str) -> str:
    return module[len(PACKAGE) + 1 :] if module != PACKAGE else ""


def layer_of(module: str) -> int:
    short = _short(module)
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if member.endswith(".*"):
                base = member[:-2]
                if short == base or short.startswith(base + "."):
                    return index
            elif short == member:
                return index
    raise LookupError(module)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str) -> dict[str, int]:
    """The package's modules ``module`` imports, each with a line doing it."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in MODULES:  # ``from pkg import name``: the package
            target = target.rpartition(".")[0]
        if target and target != module:
            found.setdefault(target, line)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = (
                _resolve(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            if source == PACKAGE or source.startswith(PACKAGE + "."):
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    add(submodule if submodule in MODULES else source, node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith(PACKAGE + ".") and text in MODULES:
                add(text, getattr(node, "lineno", 0))
            elif text.startswith(".") and text[1:].replace(".", "").replace("_", "").isalnum():
                target = _resolve(module, is_package, 1, text[1:])
                if target in MODULES:
                    add(target, getattr(node, "lineno", 0))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


GRAPH: dict[str, dict[str, int]] = {module: imports_of(module) for module in MODULES}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_scan_sees_the_imports_it_must_see() -> None:
    # an import inside a function, an importlib.import_module() by name and the
    # lazy table of the package's __init__ all count
    assert "redis_lifecycle._hooks.pubsub" in GRAPH["redis_lifecycle._hooks.sync"]
    assert "redis_lifecycle._health_asyncio" in GRAPH["redis_lifecycle.health"]
    assert "redis_lifecycle._hooks.aio_targets" in GRAPH["redis_lifecycle._hooks.targets"]
    assert "redis_lifecycle._instrument_all" in GRAPH[PACKAGE]
    # a TYPE_CHECKING import does not
    assert "redis_lifecycle.instrument" not in GRAPH["redis_lifecycle._hooks.cluster"]


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in MODULES:
        try:
            layer_of(module)
        except LookupError:
            unplaced.append(module)
    assert unplaced == [], f"add these to LAYERS in {__file__}: {unplaced}"


def test_no_import_cycles() -> None:
    found = cycles(GRAPH)
    assert found == [], f"import cycles in the package: {found}"


def test_no_import_runs_upward_through_the_layers() -> None:
    upward = []
    for module, targets in GRAPH.items():
        for target, line in targets.items():
            if layer_of(target) > layer_of(module):
                upward.append(
                    f"{MODULES[module].relative_to(ROOT.parent)}:{line}: {module} "
                    f"({LAYERS[layer_of(module)][0]}) imports {target} "
                    f"({LAYERS[layer_of(target)][0]})"
                )
    assert upward == [], "\n".join(upward)


@pytest.mark.parametrize(
    "package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py")
)
def test_no_submodule_shadows_a_global_of_its_package(package: str) -> None:
    # importing ``pkg.name`` sets the global ``name`` of pkg/__init__.py: a
    # submodule named like something the package uses (``asyncio``) replaces it.
    tree = ast.parse(MODULES[package].read_text(encoding="utf-8"))
    submodules = {m.rpartition(".")[2] for m in MODULES if m.rpartition(".")[0] == package}
    assert _global_reads(tree) & submodules == set()


def _global_reads(tree: ast.Module) -> set[str]:
    """Names read as globals: at module level, or in a function that does not bind them."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    reads: set[str] = set()

    def scan(node: ast.AST, bound: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, functions):
                inner = {a.arg for a in ast.walk(child.args) if isinstance(a, ast.arg)}
                inner |= {
                    n.id
                    for n in ast.walk(child)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
                }
                scan(child, bound | inner)
                continue
            if (
                isinstance(child, ast.Name)
                and isinstance(child.ctx, ast.Load)
                and child.id not in bound
            ):
                reads.add(child.id)
            scan(child, bound)

    scan(tree, set())
    return reads
