"""Grid files -> validated cells.

A grid is a `base` cell plus `axes` (dotted paths into the cell -> list of values); the cartesian
product of the axes gives the cells. Every cell is validated before anything runs, so a bad value
in any combination fails with one line naming the file and the dotted key.

A staged grid lists `stages` instead; raygrid.spec.stages expands them (cells named `<stage>/<axis values>`).
raygrid.spec.loader puts the pieces together (`load_grid`).
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import ValidationError

from raygrid.attention.registry import kinds as attention_kinds
from raygrid.spec.dotted import section
from raygrid.spec.config import GRID_ONLY_RESOURCES, CellConfig, GridConfig, Resources
from raygrid.spec.names import cell_name, is_bundle, legacy_cell_name, short_value
from raygrid.spec.suggest import did_you_mean, known_keys
from raygrid.spec.yaml_rules import StrictYamlRules, read_yaml

__all__ = ["cell_name", "is_bundle", "short_value"]  # re-exported: the names of cells live in raygrid.spec.names

# Refused before expansion: a grid this large is a typo (a 10^6-cell product took 105 s and 3.7 GB
# before failing), and YAML aliases nested in aliases expand exponentially ("billion laughs").
MAX_CELLS = 10_000
MAX_YAML_ALIASES = 100


class GridError(ValueError):
    """A grid file that cannot run; the message is one line naming the file and key."""


@dataclass(frozen=True)
class Cell:
    """One combination of axis values: a Ray Tune trial and an MLflow child run."""

    name: str
    axis_values: dict[str, Any]  # dotted axis key -> value, in axis order
    config: CellConfig
    stage: str | None = None  # None in a grid without stages
    parent: "Cell | None" = None  # the cell whose weights this one starts from
    parent_grid: str | None = None  # name of the grid holding `parent` (this grid's, or another's)
    tags: dict[str, str] = field(default_factory=dict)  # extra MLflow tags, e.g. where `select:` took values
    # Where the trial runs: the grid's resources, overridden by its stage's and its axis values'.
    resources: Resources = field(default_factory=Resources)

    @property
    def former_names(self) -> tuple[str, ...]:
        """Names earlier raygrid versions recorded this cell under (raygrid.spec.names), other than `name`."""
        former = legacy_cell_name(self.axis_values)
        former = f"{self.stage}/{former}" if self.stage else former
        return (former,) if former != self.name else ()

    def recorded(self, records: dict[str, Any]) -> Any:
        """This cell's entry in `records` keyed by recorded cell name: under its name, else a former one; or None."""
        return next((records[n] for n in (self.name, *self.former_names) if n in records), None)


@dataclass(frozen=True)
class Grid:
    path: Path
    spec: GridConfig
    cells: list[Cell]
    text: str  # the YAML as written, logged to the parent run
    # Command-line overrides applied over `text` (raygrid.spec.overrides), as typed; recorded in the parent run.
    overrides: tuple[str, ...] = ()
    # Stage names in dependency order (parents first); [] for a grid without stages.
    stage_order: list[str] = field(default_factory=list)
    # `select:` source grids, loaded with this one: the `where` of each select -> that grid.
    sources: dict[str, "Grid"] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def blocks(self) -> list[dict[str, list]]:
        """The axes as a list of cartesian blocks (one block for a plain mapping)."""
        return blocks_of(self.spec.axes)

    def stage_cells(self, stage: str | None) -> list[Cell]:
        return [cell for cell in self.cells if cell.stage == stage]

    def external_parents(self) -> list[Cell]:
        """Cells of this grid whose parent lives in another grid (that grid must have run first)."""
        return [cell for cell in self.cells if cell.parent is not None and cell.parent_grid != self.name]


def blocks_of(axes) -> list[dict[str, list]]:
    return axes if isinstance(axes, list) else [axes]


def expand(axes) -> list[dict[str, Any]]:
    """Every combination of axis values: the union of each block's cartesian product, in order."""
    return [combo for block in blocks_of(axes) for combo in combinations(block)]


def read_grid_file(path: Path, edit: Callable[[dict], dict] | None = None) -> tuple[str, GridConfig]:
    """The file's text and its validated spec; GridError with a one-line message.

    `edit` changes the parsed tree before any check (command-line overrides), so its keys are
    checked exactly like the file's.
    """
    text, raw = read_yaml(path, _counting_loader(path), GridError)  # raygrid.spec.yaml_rules: duplicates, depth, binary
    if not isinstance(raw, dict):
        raise GridError(f"{path}: a grid file is a mapping with keys name, base, axes, resources")
    if edit is not None:
        raw = edit(raw)
    check_finite_numbers(path, raw)
    try:
        spec = GridConfig.model_validate(raw)
    except ValidationError as err:
        raise GridError(f"{path}: {describe(err)}") from None
    check_size(path, [stage.axes for stage in spec.stages] if spec.stages else [spec.axes])
    return text, spec


def describe(err: ValidationError) -> str:
    """First validation error as `dotted.key: message (got value)`."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"] if not _is_union_tag(p)) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key" + did_you_mean(first["loc"][-1], known_keys(err.title, first["loc"]))
    elif first["type"] == "missing":
        msg = "required key is missing"
    got = first.get("input")
    shown = "" if first["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {clip(got)})"
    return f"{key}: {msg}{shown}"


def clip(value: Any, limit: int = 80) -> str:
    """repr() of a value for a one-line message, cut short: a pasted document must not flood the terminal."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class _AliasCountingLoader(StrictYamlRules):
    """SafeLoader that refuses more than MAX_YAML_ALIASES aliases (`*name`) in one file."""

    grid_path: Path = Path("?")
    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise GridError(f"{self.grid_path}: more than {MAX_YAML_ALIASES} YAML aliases (*name); "
                                f"write the values out or use axes blocks")
        return super().compose_node(parent, index)


def _counting_loader(path: Path):
    return type("GridLoader", (_AliasCountingLoader,), {"grid_path": path})


def check_finite_numbers(path: Path, tree: Any, key: str = "") -> None:
    """Refuse inf and nan anywhere in a grid file (YAML reads `.inf`/`.nan` as floats; a cell would train on them)."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            check_finite_numbers(path, value, f"{key}.{name}" if key else str(name))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            check_finite_numbers(path, value, f"{key}[{i}]")
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise GridError(f"{path}: {key or '(top level)'}: numbers must be finite (got {tree})")


def check_size(path: Path, all_axes: list) -> None:
    """Refuse grids of more than MAX_CELLS cells before building any (counted, not expanded)."""
    total = sum(math.prod(len(values) for values in block.values()) for axes in all_axes for block in blocks_of(axes))
    if total > MAX_CELLS:
        raise GridError(f"{path}: axes: {total} cells, more than raygrid's limit of {MAX_CELLS}; "
                        f"split the grid into several files")


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the discriminator value ('favor', ...) or a union member's type
    # ('dict[str,list[any]]') into error locations; neither is a key the user wrote.
    return part in attention_kinds() or (isinstance(part, str) and "[" in part)


def combinations(axes: dict[str, list]):
    keys = list(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, values))


def make_cell(path: Path, base: dict, combo: dict[str, Any], where: str = "", settings: dict | None = None,
              resources: Resources | None = None) -> Cell:
    raw = copy.deepcopy(base)
    for dotted, setting in (settings or {}).items():
        set_dotted(raw, dotted, setting)
    for key, value in combo.items():
        settings = value["set"] if is_bundle(value) else {key: value}
        for dotted, setting in settings.items():
            try:
                set_dotted(raw, dotted, resolve_paths(setting, path.parent))
            except KeyError as err:
                raise GridError(f"{path}: {where + '.' if where else ''}axes.{key}: {err.args[0]}") from None
    placement = cell_resources(path, resources or Resources(), raw.pop("resources", None),
                               f"{where + '.' if where else ''}{'axes' if combo else 'base'}.resources", combo)
    try:
        config = CellConfig.model_validate(raw)
    except ValidationError as err:
        detail = describe(err)
        key = detail.split(":", 1)[0]
        from_axis = any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in combo)
        cell = f" (cell {combo_label(combo)})" if combo else ""
        section = f"{where + '.' if where else ''}{'axes' if from_axis else 'base'}"
        raise GridError(f"{path}: {section}.{detail}{cell}") from None
    return Cell(name=cell_name(combo), axis_values=combo, config=config, resources=placement)


def cell_resources(path: Path, defaults: Resources, overrides: Any, section: str,
                   combo: dict[str, Any] | None = None) -> Resources:
    """`defaults` with a stage's or cell's own `resources` settings merged in; errors name `section`'s key."""
    if not overrides:
        return defaults
    if not isinstance(overrides, dict):
        raise GridError(f"{path}: {section}: expected a mapping of resource keys (got {short_value(overrides)})")
    for key in GRID_ONLY_RESOURCES:
        if key in overrides:
            raise GridError(f"{path}: {section}.{key}: set for the whole grid only (top-level resources)")
    try:
        return Resources.model_validate({**defaults.model_dump(exclude_unset=True), **overrides})
    except ValidationError as err:
        cell = f" (cell {combo_label(combo)})" if combo else ""
        raise GridError(f"{path}: {section}.{describe(err)}{cell}") from None


def combo_label(combo: dict[str, Any]) -> str:
    """Axis values for messages: `model.pooling=cls, seed=0`."""
    return ", ".join(f"{k}={short_value(v)}" for k, v in combo.items())


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set tree[a][b][c] for 'a.b.c'. Dict values merge into dicts, unless their `kind` differs."""
    node, leaf = section(tree, dotted, create=True)
    old = node.get(leaf)
    if merges(old, value):
        node[leaf] = {**old, **value}
    else:
        node[leaf] = value


def merges(old: Any, new: Any) -> bool:
    """Whether a dict value merges into the dict already there: yes, unless it changes the `kind`."""
    return isinstance(new, dict) and isinstance(old, dict) and new.get("kind", old.get("kind")) == old.get("kind")


def resolve_paths(value: Any, root: Path) -> Any:
    """Make relative file paths (./x, ../x) absolute against the grid file's folder."""
    if isinstance(value, dict):
        return {k: resolve_paths(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_paths(v, root) for v in value]
    if isinstance(value, str) and value.startswith(("./", "../")):
        return str((root / value).resolve())
    if isinstance(value, str) and value.startswith("~"):
        return str(Path(value).expanduser())
    return value


def check_unique(path: Path, cells: list[Cell]) -> None:
    seen: set[str] = set()
    for cell in cells:
        if cell.name in seen:
            raise GridError(f"{path}: axes: two cells share the name {cell.name!r}; axis values must differ")
        seen.add(cell.name)
