"""Architecture: which package may import which, no import cycles, and a slim trainer import.

The module graph comes from `ast` over every module of the package, imports inside functions
included (a lazy import is still a dependency). `from pkg import name` is an edge to the
submodule `pkg.name` when there is one, else to `pkg`; importing a submodule is not counted as
depending on its parent package's `__init__` (that would make every package a cycle).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path


import rubricgate

PACKAGE = Path(rubricgate.__file__).parent
ROOT = "rubricgate"

# Each module belongs to one group: a subpackage, or a part of `interfaces` (longest prefix wins).
GROUPS = {
    "rubricgate.errors": "errors",
    "rubricgate.http_pool": "http_pool",
    "rubricgate.models": "models",
    "rubricgate.library": "library",
    "rubricgate.judges": "judges",
    "rubricgate.scoring": "scoring",
    "rubricgate.authoring": "authoring",
    "rubricgate.cache": "cache",
    "rubricgate.interfaces": "interfaces",
    "rubricgate.interfaces.gateway": "interfaces.gateway",
    "rubricgate.interfaces.settings": "interfaces.settings",
    "rubricgate.interfaces.evaluation": "interfaces.workflows",
    "rubricgate.interfaces.online_refinement": "interfaces.workflows",
    "rubricgate.interfaces.http": "interfaces.http",
    "rubricgate.interfaces.body_limit": "interfaces.http",
    "rubricgate.interfaces.batcher": "interfaces.http",
    "rubricgate.interfaces.metrics": "interfaces.http",
    "rubricgate.interfaces.openrlhf": "interfaces.http",
    "rubricgate.interfaces.judge_server": "interfaces.judge_server",
    "rubricgate.interfaces.cli": "interfaces.cli",
    "rubricgate.integrations": "integrations",
    "rubricgate.__main__": "main",
    "rubricgate": "api",
}
"""`interfaces.workflows`: evaluation and online refinement on top of the gateway;
`interfaces.http`: the reward server and what only it uses; `api`: `rubricgate/__init__.py`."""
PACKAGE_ONLY = {ROOT, "rubricgate.interfaces"}
"""Entries that name just that `__init__`: a new module below them needs its own entry."""

_CORE = {"errors", "http_pool", "models", "library", "judges", "scoring", "authoring", "cache"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "http_pool": {"errors"},
    "models": {"errors"},
    "library": {"errors", "models"},
    "judges": {"errors", "http_pool", "models", "library"},
    "scoring": {"errors", "models", "library", "judges"},
    "authoring": {"errors", "models", "library", "judges", "scoring"},
    "cache": {"errors", "models", "library", "judges"},
    "interfaces": set(),
    "interfaces.gateway": _CORE,
    "interfaces.settings": _CORE | {"interfaces.gateway"},
    "interfaces.workflows": _CORE | {"interfaces.gateway"},
    "interfaces.http": {"errors", "models", "library", "cache", "interfaces.gateway", "interfaces.workflows"},
    "interfaces.judge_server": {"errors"},
    "interfaces.cli": _CORE | {"interfaces.gateway", "interfaces.settings", "interfaces.workflows", "interfaces.http",
                               "interfaces.judge_server"},
    "integrations": (_CORE - {"authoring"}) | {"interfaces.gateway", "interfaces.settings"},
    "main": {"interfaces.cli"},
    "api": _CORE | {"interfaces.gateway", "interfaces.settings", "interfaces.workflows"},
}
"""Package-to-package arrows (a group may always import itself). Imports point left:
models -> judges -> scoring/authoring -> cache -> interfaces. The reward server and the CLI are
edges nothing else imports; integrations use the core and the gateway, never the CLI or server."""
SERVER_ONLY = ("rubricgate.interfaces.cli", "rubricgate.interfaces.http", "typer", "fastapi", "uvicorn", "starlette")
"""What a trainer process must not import through `rubricgate.integrations`."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(module: str) -> Iterator[tuple[str, int]]:
    """Every module name `module` imports anywhere in its body (absolute, any package), with its line."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules()]
            yield from ((name, node.lineno) for name in submodules)
            if len(submodules) < len(node.names):
                yield target, node.lineno


def owner(name: str) -> str | None:
    """The package module that defines `name` (`a.b.C` -> `a.b`), None outside this package."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in modules():
        targets = {owner(name) for name, _ in imported(module) if name.split(".")[0] == ROOT}
        edges[module] = {t for t in targets if t is not None and t != module}
    return edges


def group(module: str) -> str:
    prefixes = [p for p in GROUPS if module == p or (p not in PACKAGE_ONLY and module.startswith(p + "."))]
    if not prefixes:
        raise AssertionError(f"{module} is in no group: add it to GROUPS (and its arrows to ALLOWED) in {__file__}")
    return GROUPS[max(prefixes, key=len)]


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    components.append(sorted(component))
    return components


def test_every_module_has_a_group_with_arrows() -> None:
    for module in modules():
        assert group(module) in ALLOWED, module


def test_package_arrows_are_on_the_allow_list() -> None:
    offences = []
    for module, targets in graph().items():
        source = group(module)
        for target in sorted(targets):
            if group(target) != source and group(target) not in ALLOWED[source]:
                offences.append(f"{module} ({source}) imports {target} ({group(target)})")
    assert not offences, "\n".join(offences)


def test_function_level_imports_are_in_the_graph() -> None:
    assert "rubricgate.scoring.ifeval" in graph()["rubricgate.scoring.checks"]  # imported inside a function


def test_no_import_cycles_between_modules() -> None:
    assert strongly_connected(graph()) == []


def test_cycle_finder_finds_exactly_the_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_integrations_import_no_cli_server_or_web_stack() -> None:
    offences = []
    for module in modules():
        if group(module) != "integrations":
            continue
        for name, line in imported(module):
            if any(name == bad or name.startswith(bad + ".") for bad in SERVER_ONLY):
                offences.append(f"{modules()[module].relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not offences, "\n".join(offences)


def test_importing_the_trl_integration_loads_no_cli_or_server() -> None:
    code = ("import sys, rubricgate.integrations.trl\n"
            "print(' '.join(m for m in ('typer', 'fastapi', 'uvicorn') if m in sys.modules))")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


def test_public_api_is_sorted_and_complete() -> None:
    assert rubricgate.__all__ == sorted(rubricgate.__all__)
    for name in rubricgate.__all__:
        assert hasattr(rubricgate, name), name


def test_sdk_imports_stay_in_private_backend_modules() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if "import litellm" in text or "from llama_cpp" in text:
            assert path.name in {"_litellm.py", "_llamacpp.py"}, path
