"""raygrid/report's modules meet at public names: none imports or calls another module's `_private` function."""
import ast
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "raygrid" / "report"


def private_uses(source: str) -> list[str]:
    """`from raygrid.x import _name` and `alias._name(...)` where `alias` is an imported raygrid module."""
    tree = ast.parse(source)
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("raygrid"):
            found += [f"from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
            modules |= {a.asname or a.name for a in node.names}  # `from raygrid.report import tables as report`
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name.startswith("raygrid")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_finder_finds_private_uses():
    source = ("from raygrid.report.tables import COSTS, _metric\nfrom raygrid.report import tables as report\n"
              "x = report._param(runs, 'kind')\ny = report.finished_cells(runs)\n")
    assert private_uses(source) == ["from raygrid.report.tables import _metric", "report._param"]


def test_report_modules_use_only_each_others_public_names():
    found = [f"{path.name}: {use}" for path in sorted(REPORT.glob("*.py")) for use in private_uses(path.read_text())]
    assert not found, "\n".join(found)
