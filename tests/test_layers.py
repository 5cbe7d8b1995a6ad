"""The layers go one way: checked by parsing every import (top-level and inside functions).

* berg_core: ``cli -> api -> (registry, cards, schemas, dims, encoder, render, ...)``. Nothing in
  berg_core imports :mod:`berg_core.cli` (the ``berg`` console script is its only user); only the
  package's ``__init__`` (the public entry point) and the CLI import :mod:`berg_core.api`, apart
  from the one documented exception below; :mod:`berg_core.fetch` imports neither.
* Plugins: a plugin imports from another plugin only a module that plugin declares public (its
  package's ``PUBLIC_MODULES``), and from it only names in that module's ``__all__`` that do not
  start with ``_``. Every plugin that another one imports declares ``PUBLIC_MODULES``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "berg_core"
PLUGIN_PACKAGES = {
    path.parent.name: path.parent for path in sorted((ROOT / "plugins").glob("*/*/__init__.py"))
}

#: berg_core modules that may import berg_core.api, and why.
API_USERS = {
    "berg_core": "the package's public entry point re-exports BERG",
    "berg_core.cli": "the command line is the layer above the API",
    "berg_core.check": "`berg check` runs a plugin's models through the API (beside the CLI)",
    "berg_core.testing": "the contract tests run models through the API (beside the CLI)",
}


def module_name(path: Path, root: Path) -> str:
    """Dotted name of *path* under *root* (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: str) -> list[tuple[str, tuple[str, ...], int]]:
    """``(module, names, line)`` of every import in *path*; relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, tuple(alias.name for alias in node.names), node.lineno))
    return found


def core_graph() -> dict[str, set[str]]:
    """berg_core module -> the berg_core modules it imports (``from berg_core import x``
    counts as importing ``berg_core.x`` when x is a module, else ``berg_core``)."""
    modules = {module_name(p, ROOT): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for module, names, _ in imports(path, package):
            if module != "berg_core" and not module.startswith("berg_core."):
                continue
            submodules = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            targets |= submodules or {module}
        graph[name] = targets - {name}
    return graph


GRAPH = core_graph()


def test_the_graph_sees_the_known_edges() -> None:
    # the parser finds top-level and function-level imports (a check that cannot miss them all)
    assert "berg_core.api" in GRAPH["berg_core.cli"]
    assert {"berg_core.registry", "berg_core.cards", "berg_core.render"} <= GRAPH["berg_core.api"]
    assert "berg_core.registry" in GRAPH["berg_core.fetch"]


def test_nothing_imports_the_cli() -> None:
    users = sorted(name for name, targets in GRAPH.items() if "berg_core.cli" in targets)
    assert users == [], f"berg_core modules importing berg_core.cli: {users}"


def test_only_the_entry_point_and_the_cli_import_the_api() -> None:
    users = {name for name, targets in GRAPH.items() if "berg_core.api" in targets}
    assert users <= set(API_USERS), (
        f"unexpected importers of berg_core.api: {users - set(API_USERS)}"
    )


@pytest.mark.parametrize("module", ["berg_core.fetch", "berg_core.render", "berg_core.locations"])
def test_lower_layers_import_neither_api_nor_cli(module: str) -> None:
    assert not GRAPH[module] & {"berg_core.api", "berg_core.cli"}, GRAPH[module]


def test_cards_registry_schemas_stay_below_the_api() -> None:
    upper = {"berg_core.api", "berg_core.cli", "berg_core.fetch", "berg_core.output"}
    for module in ("cards", "registry", "schemas", "dims", "render", "locations", "parameters"):
        assert not GRAPH[f"berg_core.{module}"] & upper, (module, GRAPH[f"berg_core.{module}"])


def public_api(plugin: str) -> dict[str, set[str] | None]:
    """Public module -> its ``__all__`` (``None`` when it has none) of plugin package *plugin*."""
    tree = ast.parse((PLUGIN_PACKAGES[plugin] / "__init__.py").read_text(encoding="utf-8"))
    declared = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PUBLIC_MODULES" for t in node.targets
        ):
            declared = ast.literal_eval(node.value)
    if declared is None:
        return {}
    api = {}
    for module in declared:
        tree = ast.parse((PLUGIN_PACKAGES[plugin] / f"{module}.py").read_text(encoding="utf-8"))
        names = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                names = set(ast.literal_eval(node.value))
        api[module] = names
    return api


def cross_plugin_imports() -> list[tuple[str, str, str, tuple[str, ...], int]]:
    """``(file, target plugin, module, names, line)`` of every import of another plugin."""
    found = []
    for plugin, folder in PLUGIN_PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            package = module_name(path, folder.parent).rpartition(".")[0] or plugin
            for module, names, line in imports(path, package):
                target = module.split(".")[0]
                if target in PLUGIN_PACKAGES and target != plugin:
                    rel = str(path.relative_to(ROOT))
                    found.append((rel, target, module, names, line))
    return found


def violations(found: list[tuple[str, str, str, tuple[str, ...], int]]) -> list[str]:
    problems = []
    for where, target, module, names, line in found:
        api = public_api(target)
        sub = module.partition(".")[2]
        at = f"{where}:{line}: {module}"
        if not sub:
            problems.append(f"{at}: import a public module of {target}, not the package")
        elif sub.split(".")[0] not in api:
            problems.append(f"{at}: not a public module of {target} (public: {sorted(api)})")
        else:
            public = api[sub.split(".")[0]]
            for name in names:
                if name.startswith("_") or (public is not None and name not in public):
                    problems.append(f"{at}: {name} is not in {module}.__all__")
    return problems


def test_plugins_import_only_each_others_public_api() -> None:
    found = cross_plugin_imports()
    assert any(target == "berg_nsd" for _, target, *_ in found)  # the check has work to do
    assert violations(found) == []


def test_a_private_import_is_reported() -> None:
    bad = [
        ("x.py", "berg_nsd", "berg_nsd.files", ("load_metadata",), 1),
        ("x.py", "berg_nsd", "berg_nsd.fsaverage", ("_WHICH",), 2),
        ("x.py", "berg_nsd", "berg_nsd.cards", ("_card",), 3),
        ("x.py", "berg_nsd", "berg_nsd.fsaverage", ("N_VERTICES", "roi_tables"), 4),
    ]
    assert violations(bad) == [
        "x.py:1: berg_nsd.files: not a public module of berg_nsd (public: "
        "['cards', 'fsaverage', 'gifti', 'model', 'selection'])",
        "x.py:2: berg_nsd.fsaverage: _WHICH is not in berg_nsd.fsaverage.__all__",
        "x.py:3: berg_nsd.cards: _card is not in berg_nsd.cards.__all__",
    ]


def test_the_fsaverage_size_is_defined_once() -> None:
    places = []
    for path in [*CORE.rglob("*.py"), *(ROOT / "plugins").glob("*/*/**/*.py")]:
        if "tests" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == 163_842:
                places.append(str(path.relative_to(ROOT)))
    assert places == ["plugins/berg-nsd/berg_nsd/fsaverage.py"], places


def test_berg_core_reaches_dask_only_through_the_cli_hand_over() -> None:
    # berg-distributed (and dask) are optional: only `berg encode --cluster` imports them, inside
    # a function, so `import berg_core` and every other command work without them
    optional = ("dask", "distributed", "dask_jobqueue", "berg_distributed")
    found = []
    for path in CORE.rglob("*.py"):
        name = module_name(path, ROOT)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
        for module, _, line in imports(path, package):
            if module.split(".")[0] in optional:
                found.append((name, module, line in top))
    assert found == [("berg_core.cli", "berg_distributed.cli", False)], found
