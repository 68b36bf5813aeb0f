"""How a grid file is read as YAML: the rules a plain `yaml.safe_load` does not enforce.

- a key written twice in one mapping is refused (file, line, key): YAML's last-wins would
  silently drop the first value's settings;
- nesting deeper than MAX_YAML_DEPTH is refused before Python's recursion limit is reached
  (a 20,000-deep list is a RecursionError inside PyYAML, not a message);
- a file that is not UTF-8 text (a binary file, a wrong path) is one line naming it.

`read_yaml` raises the caller's error type (GridError) so this module imports nothing of raygrid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

# Real grids nest 5-6 levels (stages -> axes -> bundle -> data -> key); 100 leaves room for any hand-written file.
MAX_YAML_DEPTH = 100


class StrictYamlRules(yaml.SafeLoader):
    """SafeLoader that refuses duplicated mapping keys and nesting deeper than MAX_YAML_DEPTH.

    `refuse(message)` (set by the subclass) raises the caller's one-line error.
    """

    grid_path: Path = Path("?")
    depth = 0

    @staticmethod
    def refuse(message: str):  # replaced by read_yaml with the caller's error type
        raise ValueError(message)

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                self.refuse(f"{self.grid_path}: line {mark.line + 1}: YAML nested more than {MAX_YAML_DEPTH} "
                            f"levels deep; a grid file is a few levels of mappings and lists")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges are meant to be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if _hashable(key) and key in seen:
                    self.refuse(f"{self.grid_path}: line {line}: key {key!r} is written twice in one mapping "
                                f"(first on line {seen[key]}); YAML would keep only the last one")
                if _hashable(key):
                    seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def read_yaml(path: Path, loader: type[StrictYamlRules], error: Callable[[str], Exception]) -> tuple[str, Any]:
    """The file's text and parsed tree; `error(message)` (one line naming the file) for anything unreadable."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read grid file ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not a text file (byte {err.start} is not UTF-8); a grid file is YAML text") from None
    if "\x00" in text:
        raise error(f"{path}: not a text file (it contains NUL bytes); a grid file is YAML text")

    def refuse(message: str):
        raise error(message)

    rules = type("GridYamlLoader", (loader,), {"grid_path": path, "refuse": staticmethod(refuse)})
    try:
        return text, yaml.load(text, Loader=rules)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise error(f"{path}:{where} invalid YAML ({getattr(err, 'problem', None) or err})") from None
    except RecursionError:  # a structure our depth rule does not see (e.g. deep flow mappings in keys)
        raise error(f"{path}: YAML nested too deeply to read; a grid file is a few levels of mappings and lists") from None
