"""Cell names read like calls (`attention=favor(nb_features=64)`), and names an older raygrid recorded are still
recognised: the exact old name per cell (Cell.former_names) and a rewrite of recorded names for reports."""
from pathlib import Path

from raygrid.spec.loader import load_grid
from raygrid.spec.names import cell_name, legacy_cell_name, modern_label, modern_name, short_value, top_level_parts

GRIDS = sorted((Path(__file__).resolve().parents[2] / "grids").glob("*.yaml"))
FAVOR = {"kind": "favor", "feature_map": "hyperbolic", "nb_features": 64}


def test_dict_values_read_like_calls_and_plain_values_as_written():
    assert cell_name({"attention": FAVOR, "seed": 0}) == "attention=favor(feature_map=hyperbolic,nb_features=64),seed=0"
    assert short_value({"kind": "softmax"}) == "softmax"  # a kind alone needs no parentheses
    assert short_value({"num_hidden_layers": 4}) == "(num_hidden_layers=4)"
    assert short_value({"kind": "lsh", "inner": {"kind": "x", "a": 1}}) == "lsh(inner=x(a=1))"
    assert short_value({"label": "imdb", "set": {"data.dataset": "imdb"}}) == "imdb"
    assert short_value("/a/b/ckpt") == "ckpt" and short_value(1e-4) == "0.0001" and short_value(-1) == "-1"
    # ( ) , are the structure of a value: inside a plain value they become _, so a name splits one way
    assert short_value("a,b (c)") == "a_b__c_" and cell_name({"x.y": "a,b"}) == "y=a_b"
    long = short_value({"kind": "favor", "x" * 70: 1})
    assert len(long) == 64 and long != short_value({"kind": "favor", "x" * 70: 2})  # unique by a hash of the value


def test_no_dash_joins_the_entries_of_a_dict_value():
    name = cell_name({"attention": {"kind": "lsh", "num_hashes": 2, "chunk_size": 64, "mask_within_chunks": False}})
    assert "-" not in name and name == "attention=lsh(num_hashes=2,chunk_size=64,mask_within_chunks=False)"


def test_legacy_names_are_the_old_format_exactly():
    assert legacy_cell_name({"attention": FAVOR, "seed": 0}) == "attention=favor-feature_map=hyperbolic-nb_features=64,seed=0"
    assert legacy_cell_name({"model.pooling": "cls", "model.p_drop": 0.1}) == "pooling=cls,p_drop=0.1"
    assert legacy_cell_name({"attention": {"kind": "softmax"}}) == "attention=softmax"
    assert legacy_cell_name({}) == cell_name({}) == "base"


def test_every_shipped_cell_keeps_its_old_name_and_a_recorded_old_name_reads_as_the_new_one():
    renamed = 0
    for path in GRIDS:
        for cell in load_grid(path).cells:
            old = legacy_cell_name(cell.axis_values)
            old = f"{cell.stage}/{old}" if cell.stage else old
            assert modern_name(old) == cell.name, (path.name, old)
            assert modern_name(cell.name) == cell.name  # today's names are left alone
            assert cell.former_names == ((old,) if old != cell.name else ())
            renamed += bool(cell.former_names)
    assert renamed >= 60  # the attention, chain and study grids' dict-valued cells


def test_modern_label_leaves_plain_and_cut_labels_alone():
    assert modern_label("favor-nb_features=64") == "favor(nb_features=64)"
    assert modern_label("a=1-b=2") == "(a=1,b=2)"
    for label in ("cls", "0.1", "bert-base", "x=1", "favor(nb_features=64)", "favor-x=1~0123abcd"):
        assert modern_label(label) == label


def test_a_cell_finds_its_record_under_a_former_name():
    grid = load_grid("grids/quickstart_chain.yaml")
    favor = grid.cells[1]
    assert favor.name == "tapt/attention=favor(feature_map=hyperbolic,nb_features=64)"
    assert favor.former_names == ("tapt/attention=favor-feature_map=hyperbolic-nb_features=64",)
    assert favor.recorded({favor.former_names[0]: "old run"}) == "old run"
    assert favor.recorded({favor.name: "new", favor.former_names[0]: "old"}) == "new"
    assert favor.recorded({}) is None and grid.cells[0].former_names == ()


def test_top_level_parts_split_outside_parentheses():
    assert top_level_parts("attention=favor(a=1,b=2),seed=0") == ["attention=favor(a=1,b=2)", "seed=0"]
    assert top_level_parts("base") == ["base"]
