"""Every third-party module raygrid imports is provided by a distribution pyproject.toml declares.

Imports are read from the source (ast, every `import` wherever it sits), and each top-level module
is mapped to the distributions that install it (importlib.metadata.packages_distributions), so an
import that only works because something else pulled the package in (scipy through scikit-learn)
fails here. Modules of the optional extras must be imported lazily (inside a function): the core
package has to import without them.
"""
import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import raygrid

PACKAGE = Path(raygrid.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def normalise(name: str) -> str:
    """PEP 503 name: PyYAML -> pyyaml, scikit_learn -> scikit-learn."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1))


def declared() -> tuple[set[str], set[str]]:
    """(core dependencies, optional-extra dependencies) of pyproject.toml, normalised names."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    optional = {requirement_name(r) for extra in project.get("optional-dependencies", {}).values() for r in extra}
    return {requirement_name(r) for r in project["dependencies"]}, optional


def third_party_imports(source: str) -> dict[str, bool]:
    """Top-level third-party module -> imported only inside functions (lazily)."""
    tree = ast.parse(source)
    lazy_nodes = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef,
                                                                                    ast.AsyncFunctionDef))
                  for node in ast.walk(function)}
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for top in {name.split(".")[0] for name in names}:
            if top in sys.stdlib_module_names or top == "raygrid" or top == "__future__":
                continue
            found[top] = found.get(top, True) and id(node) in lazy_nodes
    return found


def undeclared(imports: dict[str, bool], core: set[str], optional: set[str], distributions: dict) -> list[str]:
    """Why each import is not covered: no declared distribution provides it (or an extra's at module level)."""
    problems = []
    for module, lazy in sorted(imports.items()):
        providers = {normalise(d) for d in distributions.get(module, [])} or {normalise(module)}  # not installed
        if providers & core:
            continue
        if providers & optional:
            if not lazy:
                problems.append(f"{module}: an optional extra's module imported at module level")
            continue
        problems.append(f"{module}: provided by {sorted(providers)}, none declared in pyproject.toml")
    return problems


def package_imports() -> dict[str, bool]:
    merged: dict[str, bool] = {}
    for path in PACKAGE.rglob("*.py"):
        for module, lazy in third_party_imports(path.read_text()).items():
            merged[module] = merged.get(module, True) and lazy
    return merged


def test_every_third_party_import_is_a_declared_dependency():
    core, optional = declared()
    imports = package_imports()
    assert {"torch", "pandas", "scipy", "sklearn", "yaml"} <= set(imports)  # the walk sees the package
    assert undeclared(imports, core, optional, packages_distributions()) == []


def test_the_check_catches_an_undeclared_or_eager_optional_import():
    source = "import scipy.stats\nimport yaml\ndef bench():\n    import performer_pytorch\nimport reformer_pytorch\n"
    imports = third_party_imports(source)
    assert imports == {"scipy": False, "yaml": False, "performer_pytorch": True, "reformer_pytorch": False}
    distributions = {"scipy": ["scipy"], "yaml": ["PyYAML"]}  # the extras' modules are not installed
    problems = undeclared(imports, {"pyyaml"}, {"performer-pytorch", "reformer-pytorch"}, distributions)
    assert problems == ["reformer_pytorch: an optional extra's module imported at module level",
                        "scipy: provided by ['scipy'], none declared in pyproject.toml"]
