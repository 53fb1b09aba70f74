"""The package's imports run one way: each module imports only from floors below its own.

The floors (docs/architecture.md draws them): leaves ← the job ← ports ← mechanisms ← features
← the executor ← integrations. A module may also import a module of its own floor (the queue
uses the scheduler), as long as no import cycle forms. ``TYPE_CHECKING`` imports count
too: a type-only edge is still a dependency a reader has to follow. This test reads the source
(``ast``), so it checks imports inside functions as well. Docstrings and comments may name the
executor; code (annotations and quoted annotations included) below it may not.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "backburner"

LEAVES, JOB, PORTS, MECHANISMS, FEATURES, EXECUTOR, INTEGRATIONS = range(1, 8)
FLOOR_NAMES = {
    LEAVES: "leaves",
    JOB: "the job",
    PORTS: "ports",
    MECHANISMS: "mechanisms",
    FEATURES: "features",
    EXECUTOR: "the executor",
    INTEGRATIONS: "integrations",
}

# Module (dotted, relative to the package) -> floor. A new module must be placed here.
FLOORS: dict[str, int] = {}
for names, floor in (
    (
        "_errors _status _clock _registry _jsonargs _checks _stats _errortext _limitdefs "
        "_progress _info _durations",
        LEAVES,
    ),
    ("_options _job _callables", JOB),
    ("_ports", PORTS),
    (
        "_scheduler _threads _unique _failures _periodic _lag _history _queue _admission "
        "_shutdown _budget _context _outcomes _find _enqueue _steering _current _limits "
        "_pressure _handle _results _lookup _coordination _hostlimits _deadlist",
        MECHANISMS,
    ),
    ("_journal _engines _otel", FEATURES),
    ("_settings _parts _executor", EXECUTOR),
    (
        "__init__ _proxy _asgi testing taskiq dashboard fastapi pytest_plugin logs health "
        "prometheus otel status",
        INTEGRATIONS,
    ),
):
    for name in names.split():
        FLOORS[name] = floor


def floor_of(module: str) -> int:
    """The floor of a module: its own entry, else its top-level package's."""
    top = module.split(".")[0]
    if module in FLOORS:
        return FLOORS[module]
    if top in FLOORS:
        return FLOORS[top]
    raise AssertionError(
        f"backburner.{module} has no floor: place it in FLOORS in tests/test_layers.py "
        f"(and in docs/architecture.md)"
    )


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        yield ".".join(parts), path


def imported(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of a backburner module, relative or absolute."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if module == "__init__":
        package = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "backburner":
                target = node.module.split(".")[1:]
            else:
                continue
            names = [alias.name for alias in node.names]
            for name in names:
                full = ".".join([*target, name])
                yield node.lineno, full if _exists(full) else ".".join(target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "backburner":
                    yield node.lineno, ".".join(alias.name.split(".")[1:]) or "__init__"


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def test_imports_run_down_the_floors() -> None:
    wrong = []
    for module, path in modules():
        floor = floor_of(module)
        for line, target in imported(module, path):
            if not target or target == module:
                continue
            target_floor = floor_of(target)
            if target_floor <= floor:  # (within a floor: no cycle, the test below says)
                continue
            wrong.append(
                f"{path.relative_to(PACKAGE)}:{line}: {module} ({FLOOR_NAMES[floor]}) imports "
                f"{target} ({FLOOR_NAMES[target_floor]})"
            )
    assert not wrong, "imports that run up or across the floors:\n" + "\n".join(wrong)


def test_nothing_below_the_executor_names_backburner() -> None:
    named = []
    for module, path in modules():
        if floor_of(module) >= EXECUTOR:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = (
                node.id
                if isinstance(node, ast.Name)
                else node.attr
                if isinstance(node, ast.Attribute)
                else node.name
                if isinstance(node, ast.alias)
                else node.value
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                else None
            )
            if isinstance(name, str) and re.fullmatch(r"\W*Backburner\W*", name):
                line = getattr(node, "lineno", "?")
                named.append(f"{path.relative_to(PACKAGE)}:{line}: {module} names {name}")
    assert not named, "modules below the executor that name Backburner:\n" + "\n".join(named)


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        graph[module] = {t for _, t in imported(module, path) if t and t != module}
    return graph


def test_the_import_graph_has_no_cycle() -> None:
    graph = _import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt in graph and nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


# Pairs of objects that may touch each other's private attributes, each for a stated reason
# (docs/architecture.md lists them): (file, attribute) -> why.
FRIENDS: dict[tuple[str, str], str] = {
    ("_enqueue.py", "_submit"): "the enqueue family ends in its target's one entry point",
    ("_enqueue.py", "_asubmit"): "the same, for aenqueue",
    ("_queue.py", "_status"): "a queue starts a job under its own lock without a call (hot path)",
    ("_queue.py", "_spec"): "a queue reads what a job runs without a property call (hot path)",
    ("_queue.py", "_started"): "a queue stamps a job's start without a property call (hot path)",
    ("_queue.py", "_finished"): "a queue reads a job's end time without a property call (hot path)",
    ("_limits.py", "_status"): "the limits' gate holds and lets go a job without a call (hot path)",
    ("_limits.py", "_spec"): "the limits' gate reads a job's limits without a property call",
    ("_job.py", "_final"): "JobStatus's per-member end flag, read on every job's path",
    ("_status.py", "_final"): "JobStatus sets that flag on each member",
    ("_scheduler.py", "_note_cancelled"): "a Timer tells its Scheduler it was cancelled",
}
# NamedTuple's own public methods are spelt with an underscore.
_NAMEDTUPLE = {"_make", "_replace", "_asdict", "_fields", "_field_defaults"}


def private_accesses() -> list[tuple[str, int, str]]:
    """Every ``x._name`` in the package where ``x`` is not ``self``, ``cls`` or a module."""
    found = []
    for _, path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported_modules = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in _NAMEDTUPLE:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in {"self", "cls", *imported_modules}:
                continue
            relative = path.relative_to(PACKAGE).as_posix()
            found.append((relative, node.lineno, ast.unparse(node)))
    return found


def test_no_object_reaches_into_another_but_declared_friends() -> None:
    strangers = [
        f"{file}:{line}: {text}"
        for file, line, text in private_accesses()
        if (file, text.rsplit(".", 1)[1]) not in FRIENDS
    ]
    assert not strangers, (
        "code that reads or writes another object's private attribute (use a method, or "
        "declare the pair in FRIENDS and docs/architecture.md, saying why):\n"
        + "\n".join(strangers)
    )


def test_the_friends_are_few() -> None:
    assert len(private_accesses()) <= 40


def test_the_architecture_page_lists_every_module_and_names_nothing_private() -> None:
    page = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for module, path in modules():
        parts = module.split(".")
        shown = f"`{parts[0]}/`" if len(parts) > 1 or path.name == "__init__.py" else None
        if module == "__init__":
            shown = "`__init__.py`"
        elif shown is None:
            shown = f"`{path.name}`"
        if shown not in page:
            missing.append(shown)
    assert not missing, f"docs/architecture.md does not list {sorted(set(missing))}"
    private = {
        name
        for name in re.findall(r"`([^`\s]+)`", page)
        if re.search(r"(^|\.)_[a-z]", name) and not name.endswith((".py", "/"))
    }
    assert not private, f"docs/architecture.md names private identifiers: {sorted(private)}"
