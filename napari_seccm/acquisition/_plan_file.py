"""Reading plan files defensively: YAML and JSON text of bounded size, depth
and (alias-expanded) node count, no duplicate keys, every problem one line
that names the file, the place and the limit.

A plan file is small (a few kB); these limits only stop files that are not
plans (a binary, a directory, a log) or that would hang or exhaust memory (a
YAML "billion laughs" alias bomb, a JSON nesting of a million brackets).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

#: the largest plan file read, bytes (a plan with 50,000 listed points is ~1 MB)
MAX_PLAN_BYTES = 4 * 1024 * 1024
#: the most values a plan may hold once YAML aliases are expanded
MAX_PLAN_NODES = 1_000_000
#: the deepest nesting of lists and mappings in a plan
MAX_PLAN_DEPTH = 32


class PlanInputError(ValueError):
    """A plan file or text that cannot be read as a plan; the message is one
    line naming the file, the place (field, line) and the limit."""


def _one_line(text: str, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _where(name: str) -> str:
    return f"{name}: " if name else ""


def read_plan_text(path: str | Path, *, max_bytes: int = MAX_PLAN_BYTES) -> str:
    """The text of a plan file, or PlanInputError/FileNotFoundError saying why not."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"plan file {p} does not exist")
    try:
        if p.is_dir():
            raise PlanInputError(f"{p} is a directory, not a plan file (.yaml or .json)")
        size = p.stat().st_size
        if size > max_bytes:
            raise PlanInputError(
                f"{p} is {size:,} bytes, above the limit for a plan file of {max_bytes:,} "
                "bytes: is it a plan (.yaml or .json)?"
            )
        data = p.read_bytes()[: max_bytes + 1]
    except OSError as e:  # permission denied, a device, a broken link...
        raise PlanInputError(f"cannot read plan file {p}: {e.strerror or e}") from e
    if len(data) > max_bytes:  # a file that grew, or a pipe
        raise PlanInputError(
            f"{p} is above the limit for a plan file of {max_bytes:,} bytes: "
            "is it a plan (.yaml or .json)?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PlanInputError(
            f"{p} is not a text plan file: byte 0x{data[e.start]:02x} at offset {e.start} "
            "is not UTF-8 (a plan is YAML or JSON text)"
        ) from e


def check_size(text: str, max_bytes: int, name: str = "") -> None:
    n = len(text.encode("utf-8", "surrogatepass"))
    if n > max_bytes:
        raise PlanInputError(
            f"{_where(name)}the plan text is {n:,} bytes, above the limit of {max_bytes:,} bytes"
        )


# ------------------------------------------------------------------ YAML
def _yaml_error(e: Exception, name: str) -> PlanInputError:
    import yaml

    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    if isinstance(e, yaml.MarkedYAMLError):
        what = "; ".join(
            str(x) for x in (getattr(e, "problem", None), getattr(e, "context", None)) if x
        )
    else:
        what = str(e)
    return PlanInputError(
        _one_line(f"{_where(name)}not valid YAML{where}: {what or type(e).__name__}")
    )


def _node_children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_node_budget(root: Any, max_nodes: int, max_depth: int, name: str) -> None:
    """Count the values of a composed YAML document as they would be after
    expanding every alias, without expanding them (each node once); refuse a
    document above ``max_nodes`` values or ``max_depth`` levels, and a
    recursive alias."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = _node_children(node)
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            line = node.start_mark.line + 1
            if size[key] > max_nodes:
                raise PlanInputError(
                    f"{_where(name)}the YAML at line {line} expands to more than "
                    f"{max_nodes:,} values (through its aliases, *name), above the limit "
                    f"of {max_nodes:,}: a plan needs far fewer"
                )
            if depth[key] > max_depth:
                raise PlanInputError(
                    f"{_where(name)}the YAML at line {line} is nested {depth[key]} levels "
                    f"deep (through its aliases, *name), above the limit of {max_depth}"
                )
            continue
        if key in size:
            continue
        if key in open_:
            raise PlanInputError(
                f"{_where(name)}the YAML at line {node.start_mark.line + 1} contains "
                "itself through an alias (*name): a plan cannot be recursive"
            )
        open_.add(key)
        stack.append((node, True))
        for k in kids:
            if id(k) in open_:
                raise PlanInputError(
                    f"{_where(name)}the YAML at line {k.start_mark.line + 1} contains "
                    "itself through an alias (*name): a plan cannot be recursive"
                )
            if id(k) not in size:
                stack.append((k, False))


def _loader_class(max_depth: int) -> type:
    import yaml

    merge_tag = "tag:yaml.org,2002:merge"

    class PlanLoader(yaml.SafeLoader):
        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > max_depth:
                    mark = self.peek_event().start_mark
                    raise PlanInputError(
                        f"the YAML at line {mark.line + 1} is nested more than {max_depth} "
                        f"levels deep, above the limit of {max_depth}"
                    )
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == merge_tag:
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        hash(key)
                    except TypeError:
                        continue  # yaml says "found unhashable key" itself
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        raise PlanInputError(
                            f"duplicate key {_one_line(repr(key), 60)} at line {line} "
                            f"(first at line {seen[key]}): each field may be given once"
                        )
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return PlanLoader


def load_yaml(
    text: str,
    *,
    name: str = "",
    max_bytes: int = MAX_PLAN_BYTES,
    max_nodes: int = MAX_PLAN_NODES,
    max_depth: int = MAX_PLAN_DEPTH,
) -> Any:
    """Parse plan YAML safely (see the module's limits); PlanInputError on any problem."""
    import yaml

    check_size(text, max_bytes, name)
    loader = _loader_class(max_depth)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node_budget(node, max_nodes, max_depth, name)
        return loader.construct_document(node)
    except PlanInputError as e:
        msg = str(e)
        if name and not msg.startswith(f"{name}: "):
            msg = f"{name}: {msg}"
        raise PlanInputError(msg) from None
    except yaml.YAMLError as e:
        raise _yaml_error(e, name) from None
    except RecursionError:
        raise PlanInputError(
            f"{_where(name)}the YAML is nested too deeply (limit {max_depth} levels)"
        ) from None
    except (ValueError, OverflowError, TypeError) as e:  # e.g. an int of 5,000 digits
        raise PlanInputError(_one_line(f"{_where(name)}not a valid YAML value: {e}")) from None
    finally:
        loader.dispose()


# ------------------------------------------------------------------ JSON
def _line_of_key(text: str, key: str, nth: int) -> int | None:
    hits = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    return text.count("\n", 0, hits[nth]) + 1 if len(hits) > nth else None


def load_json(
    text: str,
    *,
    name: str = "",
    max_bytes: int = MAX_PLAN_BYTES,
    max_depth: int = MAX_PLAN_DEPTH,
) -> Any:
    """Parse plan JSON: duplicate keys, too deep nesting and bad syntax are
    refused in one line (NaN/Infinity are parsed; the plan refuses them by field)."""
    check_size(text, max_bytes, name)
    dup: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out and not dup:
                dup.append(k)
            out[k] = v
        return out

    def parse_int(s: str) -> int:
        if len(s.lstrip("-")) > 40:
            raise PlanInputError(
                f"{_where(name)}the integer {s[:20]}... has {len(s)} digits: not a plan value"
            )
        return int(s)

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_int=parse_int)
    except PlanInputError:
        raise
    except json.JSONDecodeError as e:
        raise PlanInputError(
            f"{_where(name)}not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise PlanInputError(
            f"{_where(name)}the JSON is nested too deeply (limit {max_depth} levels)"
        ) from None
    except (ValueError, OverflowError) as e:
        raise PlanInputError(_one_line(f"{_where(name)}not a valid JSON value: {e}")) from None
    if dup:
        # the second occurrence is the one that would silently win
        line = _line_of_key(text, dup[0], 1)
        at = f" at line {line}" if line else ""
        raise PlanInputError(
            f"{_where(name)}duplicate key {dup[0]!r}{at}: each field may be given once"
        )
    _check_depth(data, max_depth, name)
    return data


def _check_depth(data: Any, max_depth: int, name: str) -> None:
    stack = [(data, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            kids = list(v.values())
        elif isinstance(v, list):
            kids = v
        else:
            continue
        if d > max_depth:
            raise PlanInputError(
                f"{_where(name)}the plan is nested more than {max_depth} levels deep, "
                f"above the limit of {max_depth}"
            )
        stack.extend((k, d + 1) for k in kids)
