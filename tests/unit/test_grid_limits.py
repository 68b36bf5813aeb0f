"""Bad input refused while loading a grid file: non-finite numbers, huge products, alias bombs, huge values."""
import time

import pytest

from raygrid.spec.grid import MAX_CELLS, MAX_YAML_ALIASES
from raygrid.spec.loader import load_grid
from tests.unit.test_config_grid import BASE, error_of


@pytest.mark.parametrize("where, text", [
    ("axes.optim.lr[0]", "axes:\n  optim.lr: [.inf]\n"),
    ("base.optim.lr", "  optim: {lr: .nan}\n"),
    ("resources.cpus_per_worker", "resources: {cpus_per_worker: -.inf}\n"),
])
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, where, text):
    message = error_of(tmp_path, BASE + text)
    assert f"{where}: numbers must be finite" in message


def test_a_huge_product_is_refused_quickly_without_expansion(tmp_path):
    values = "[" + ", ".join(str(i) for i in range(100)) + "]"
    start = time.perf_counter()
    message = error_of(tmp_path, BASE + f"axes:\n  seed: {values}\n  data.split_seed: {values}\n"
                                        f"  optim.epochs: [1, 2]\n")
    assert time.perf_counter() - start < 5
    assert f"20000 cells, more than raygrid's limit of {MAX_CELLS}" in message


def test_the_cap_counts_every_stage(tmp_path):
    values = "[" + ", ".join(str(i) for i in range(101)) + "]"
    stages = (f"stages:\n  - name: a\n    axes: {{seed: {values}, data.split_seed: {values}}}\n"
              f"  - name: b\n    axes: {{seed: [0]}}\n")
    assert "10202 cells" in error_of(tmp_path, BASE + stages)


def test_a_grid_at_the_cap_still_loads_its_size_check(tmp_path):
    # just under the cap the check passes (expansion itself is not tested here: 10^4 cells is slow)
    from raygrid.spec.grid import check_size

    check_size(tmp_path / "g.yaml", [{"seed": list(range(100)), "data.split_seed": list(range(100))}])


def test_alias_bombs_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    message = error_of(tmp_path, BASE + "\n".join(lines) + "\n")
    assert f"more than {MAX_YAML_ALIASES} YAML aliases" in message


def test_a_few_aliases_are_fine(tmp_path):
    grid = load_grid(_write(tmp_path, BASE.replace(
        "  model: {checkpoint: /tmp/ckpt}", "  model: &m {checkpoint: /tmp/ckpt}") + "axes:\n  model: [*m]\n"))
    assert len(grid.cells) == 1


def test_a_huge_bad_value_is_not_echoed_whole(tmp_path):
    message = error_of(tmp_path, BASE + "axes:\n  model.pooling: ['" + "x" * 100_000 + "']\n")
    assert len(message) < 500 and "100002 characters" in message


def _write(tmp_path, text):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path
