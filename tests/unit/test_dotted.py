"""raygrid.spec.dotted: the one walker of dotted paths ("model.pooling") through mappings and objects."""
import pytest
from torch import nn

from raygrid.spec.dotted import all_paths, flatten, get_path, has_path, section, set_path

TREE = {"model": {"pooling": "cls", "head": None, "config_overrides": {}}, "seed": 0, "name": "x"}


def test_get_path_steps_into_mappings_and_is_none_where_a_step_is_missing():
    assert get_path(TREE, "model.pooling") == "cls" and get_path(TREE, "seed") == 0
    assert get_path(TREE, "model") is TREE["model"]
    assert get_path(TREE, "model.missing") is None and get_path(TREE, "missing.pooling") is None
    assert get_path(TREE, "name.upper") is None  # a string is no section, not an object to look into
    assert get_path(TREE, "model.head.kind", default="none") == "none"


def test_get_path_steps_into_attributes_of_objects():
    encoder = nn.Module()
    encoder.encoder = nn.Module()
    encoder.encoder.layer = nn.ModuleList([nn.Linear(2, 2)])
    assert get_path(encoder, "encoder.layer") is encoder.encoder.layer
    assert get_path(encoder, "transformer.layer") is None


def test_has_path_counts_a_key_set_to_none():
    assert has_path(TREE, "model.head") and has_path(TREE, "model.config_overrides")
    assert not has_path(TREE, "model.dropout") and not has_path(TREE, "seed.value")


def test_section_and_set_path_add_missing_sections_and_refuse_a_leaf_as_a_section():
    tree = {"model": {"pooling": "cls"}, "seed": 0}
    assert section(tree, "model.pooling") == (tree["model"], "pooling")
    assert section(tree, "optim.lr") == (None, "lr") and "optim" not in tree
    set_path(tree, "optim.lr", 1e-4)
    assert tree["optim"] == {"lr": 1e-4}
    with pytest.raises(KeyError, match="'seed' is not a section"):
        set_path(tree, "seed.value", 1)


def test_flatten_gives_leaves_and_all_paths_gives_sections_too():
    assert flatten(TREE) == {"model.pooling": "cls", "model.head": None, "seed": 0, "name": "x"}
    assert all_paths(TREE) == {"model", "model.pooling", "model.head", "model.config_overrides", "seed", "name"}
    assert all_paths({"pooling": "cls"}, "model.") == {"model.pooling"}


def test_no_module_walks_dotted_paths_on_its_own():
    """Every dotted walk goes through raygrid.spec.dotted (tracking/ keeps its own flatten for now: not ours)."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "raygrid"
    walker = re.compile(r"""for \w+ in \w+\.split\(["']\.["']\)|\*\w+, \w+ = \w+\.split\(["']\.["']\)""")
    found = [f"{path.relative_to(package)}: {line.strip()}" for path in sorted(package.rglob("*.py"))
             if path.name != "dotted.py" for line in path.read_text().splitlines() if walker.search(line)]
    assert not found, "\n".join(found)
