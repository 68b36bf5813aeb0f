"""The package's shape: no import cycles, `ray`/`mlflow` behind their layers, torch-free config and CLI start.

Imports are read from the source (every `import`, also those inside functions: a late import
still ties two modules together), so a cycle hidden behind a function-level import fails too.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path


import raygrid

PACKAGE = Path(raygrid.__file__).parent
README = PACKAGE.parent / "README.md"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names), wherever the import statement sits."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # An import of a submodule also runs its package's __init__; the edge goes to the module itself.
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_package_has_no_import_cycles():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_ray_is_imported_by_orchestration_only_and_mlflow_by_tracking_only():
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        third_party = {m.split(".")[0] for m in _imports(path)}
        if "ray" in third_party:
            assert name.startswith("raygrid.orchestration."), f"{name} imports ray"
        if "mlflow" in third_party:
            assert name.startswith("raygrid.tracking."), f"{name} imports mlflow"


def test_every_package_says_what_it_owns_and_the_readme_lists_it():
    readme = README.read_text()
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.splitlines()[0].endswith("."), f"{init}: starts with a one-line summary of what it owns"
        assert f"`raygrid/{init.parent.name}/`" in readme, f"README layout table lacks raygrid/{init.parent.name}/"
    listed = set(re.findall(r"`raygrid/([a-z_]+)/`", readme))
    assert listed <= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}, "README lists a package that is gone"


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return {m.split(".")[0] for m in out.split()}


HEAVY = {"torch", "ray", "mlflow", "transformers"}


def test_the_config_and_the_grid_loader_start_without_torch_ray_or_mlflow():
    # The attention variants' records are torch-free; their kernels load only when a model is built.
    assert not _loaded_after("import raygrid.spec.config, raygrid.spec.loader") & HEAVY


def test_the_cli_help_starts_without_torch_ray_or_mlflow():
    code = ("import contextlib, io, raygrid.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    raygrid.cli.main(['--help'])")
    assert not _loaded_after(code) & HEAVY
