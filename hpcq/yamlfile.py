"""YAML as hpcq reads it: PyYAML's safe loader, refusing duplicate keys, with `1e-3` read as a number.

PyYAML follows YAML 1.1, which silently keeps the last of two equal keys and reads `1e-3` (no dot) as a
string; a run config or study with either mistake would run something other than what its author wrote.
Every error is a ConfigError naming the file (or override) and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hpcq.errors import ConfigError


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that raises on a key written twice in one mapping and reads YAML 1.2 floats (`1e-3`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden by design
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # unhashable key: SafeLoader's own error says so
                continue
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line {first.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep)


# YAML 1.2's float, which also takes exponents without a dot (`1e-3`, `5E+2`); PyYAML's 1.1 one does not.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, origin: str, fix: str = "fix it there") -> Any:
    """`text` parsed with StrictLoader; a syntax error or a duplicate key is a ConfigError naming `origin`,
    where in it, the parser's complaint and `fix`."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = ", ".join(part for part in (err.context, err.problem) if part)
        raise ConfigError(f"{origin} is not valid YAML{where}: {problem}; {fix}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin} is not valid YAML: {err}; {fix}") from None


def read_yaml_file(path: str | Path, what: str) -> Any:
    """The YAML document in `path` (`what`: e.g. "run config", for the messages); UTF-8 text only."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
            f"save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    return parse_yaml(text, f"{what} {path}")
