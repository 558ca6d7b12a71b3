"""YAML as DVC reads and writes it, for every YAML file the project reads (params.yaml, presets.yaml, dvc.lock).

DVC reads params.yaml with ruamel.yaml (`YAML(typ="safe")`: YAML 1.2) and writes it back after `dvc exp run -S`;
`dvc exp show` shows those values. Reading with the same parser and settings means every value is what DVC
shows: `1e-3` is the number 0.001, `yes` and `on` are strings, `017` is 17, `0o17` is 15, `1_000` is 1000 (YAML 1.1,
e.g. PyYAML, reads the first as text, the next two as booleans and `017` as octal 15).

On top of DVC's reading, for files nobody promised anything about:
- a key twice in one mapping is refused (as DVC does), with a one-line message naming the key and its line;
- an alias (`*name`) is refused by default: a few lines of nested aliases make an exponentially large value (the
  "billion laughs"), and params and presets, written by hand or by `dvc exp run -S`, never need one. Files DVC
  itself wrote (dvc.lock) may be read with aliases: ruamel shares the aliased value instead of copying it;
- nesting deeper than MAX_DEPTH levels is refused (`YamlTooDeep`) instead of exhausting the stack.

Reading a file goes through `files.read_capped` (a regular file, up to a size cap).
"""

from __future__ import annotations

import io
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from .files import read_capped

MAX_DEPTH = 100  # params nest three levels (bc.trainer.devices); presets two


class YamlError(ValueError):
    """Not valid YAML (or refused: a duplicate key, an alias); str() is one line, with the line and column."""


class YamlTooDeep(YamlError):
    """Nested deeper than MAX_DEPTH levels."""


class _NoAliasComposer(Composer):
    def compose_node(self, parent, index):
        if self.parser.check_event(AliasEvent):
            mark = self.parser.peek_event().start_mark
            raise ComposerError(None, None, "an alias (*name); write the value itself", mark)
        return super().compose_node(parent, index)


class _UniqueKeyConstructor(SafeConstructor):
    def check_mapping_key(self, node, key_node, mapping, key, value) -> bool:
        if key in mapping:  # DVC refuses it too; ruamel's own message quotes both values in full, over many lines
            raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return True


def _loader(aliases: bool) -> YAML:
    yaml = YAML(typ="safe", pure=True)  # DVC's parse_yaml: YAML(typ="safe"), the same resolver (YAML 1.2)
    yaml.Constructor = _UniqueKeyConstructor
    if not aliases:
        yaml.Composer = _NoAliasComposer
    yaml.max_depth = MAX_DEPTH
    return yaml


def _one_line(exc: YAMLError) -> str:
    if not isinstance(exc, MarkedYAMLError):
        return " ".join(str(exc).split())
    mark = exc.problem_mark or exc.context_mark
    what = ": ".join(" ".join(part.split()) for part in (exc.context, exc.problem) if part)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"{what}{where}"


def parse_yaml(text: str, aliases: bool = False):
    """The value of a YAML document as DVC reads it (an empty document: None); YamlError otherwise."""
    try:
        return _loader(aliases).load(text)
    except YAMLError as exc:
        if "maximum depth" in str(getattr(exc, "problem", "") or exc):
            raise YamlTooDeep(f"nested more than {MAX_DEPTH} levels deep") from None
        raise YamlError(_one_line(exc)) from None
    except RecursionError:
        raise YamlTooDeep(f"nested more than {MAX_DEPTH} levels deep") from None


def read_yaml(path: Path | str, cap: int, aliases: bool = False):
    """parse_yaml of the regular file `path` read up to `cap` bytes as UTF-8: OSError (files.NotReadable among
    them) or UnicodeDecodeError where it cannot be read, YamlError where it is not valid YAML."""
    return parse_yaml(read_capped(path, cap).decode("utf-8"), aliases=aliases)


DVC_YAML_CAP = 1_000_000  # bytes: a dvc.yaml is a few kB


def dvc_stages(path: Path | str = "dvc.yaml") -> dict:
    """The `stages` of a dvc.yaml (read_yaml's errors where it cannot be read or parsed)."""
    return (read_yaml(path, DVC_YAML_CAP, aliases=True) or {}).get("stages") or {}


def dump_yaml(data) -> str:
    """YAML text as DVC writes params.yaml (dvc.utils.serialize.dumps_yaml): block style, round-trip dumper."""
    yaml = YAML()
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()
