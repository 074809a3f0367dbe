"""The package's shape: imports go one way (kernel <- families <- drills <- app), no import cycle, no
function-local import of a project module, and the plug-in registries refuse duplicates."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from canary import plugins
from canary.errors import ConfigError
from canary.plugins import SourceType

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "canary"
FAMILIES_AND_ABOVE = {"app", "web", "drills", "health", "seeding", "postgres", "contact", "credentials", "sinks"}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _project_imports(path: Path, known: dict[str, Path]) -> tuple[set[str], list[str]]:
    """(modules imported at module level, descriptions of imports inside functions)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    local: list[str] = []

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                else:
                    names = [f"{child.module}.{a.name}" for a in child.names] + [child.module or ""]
                found = {m for m in (resolve(n) for n in names if n.startswith("canary")) if m}
                if in_function and found:
                    local.append(f"{path.relative_to(ROOT)}:{child.lineno}")
                top.update(found)
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    walk(tree, False)
    return top, local


def test_import_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml pass: app above drills above the families, the
    signal families (postgres, contact, credentials, sinks) independent, the kernel importing none."""
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_top_level_module_is_kernel_or_a_layer() -> None:
    """A new top-level module must be declared kernel (so the kernel contract covers it) or live in a
    family, drills or app package: nothing escapes the contracts."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    kernel = next(set(c["source_modules"]) for c in contracts if c["type"] == "forbidden")
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    undeclared = {f"canary.{m}" for m in top | packages if m not in FAMILIES_AND_ABOVE} - kernel
    assert not undeclared, f"declare these in the kernel contract (or move them into a family): {sorted(undeclared)}"


def test_no_cycles_and_no_function_local_project_imports() -> None:
    """No project module imports another inside a function (the lazy imports that used to hold four
    cycles open are gone), and the module import graph has no cycle."""
    known = _modules()
    graph: dict[str, set[str]] = {}
    local: list[str] = []
    for mod, path in known.items():
        deps, inner = _project_imports(path, known)
        graph[mod] = {d for d in deps if d != mod and not d.startswith(mod + ".")}
        local += inner
    assert not local, f"function-local project imports: {local}"
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for mod in graph:
        if mod not in state:
            visit(mod, [mod])


def test_registries_list_every_builtin_once() -> None:
    """The built-in source types, sink types and seeder kinds are registered, each once."""
    assert set(plugins.source_types()) >= {"retention", "scheduler", "jsonlog", "syslog", "http_ingest",
                                            "token_honeypot", "pg_honeypot", "cloudtrail", "smtp",
                                            "mail_webhooks", "phone", "api"}
    assert set(plugins.sink_types()) >= {"stdout", "webhook", "pagerduty", "syslog"}
    assert set(plugins.seeder_types()) == {"postgres"}


def test_a_duplicate_source_type_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second source with a type that is already registered is refused, naming where it came from."""
    dup = SourceType("smtp", lambda config: [])

    class EntryPoint:
        name = "thirdparty"

        def load(self) -> SourceType:
            return dup

    monkeypatch.setattr(plugins, "entry_points", lambda group: [EntryPoint()] if group == "canary.sources" else [])
    plugins.source_types.cache_clear()
    try:
        with pytest.raises(ConfigError, match="source type 'smtp' from entry point thirdparty is already registered"):
            plugins.source_types()
    finally:
        monkeypatch.undo()
        plugins.source_types.cache_clear()


def test_seeder_for_an_unknown_kind_is_a_config_error() -> None:
    """A datastore kind no seeder is registered for fails with the known kinds listed."""
    class Datastore:
        kind = "mongodb"

    with pytest.raises(ConfigError, match="no seeder for datastore kind 'mongodb'; known: postgres"):
        plugins.seeder_for(Datastore(), None)  # type: ignore[arg-type]
