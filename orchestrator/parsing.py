"""Turning hostile text into plain data: JSON or YAML with bounds on size, expansion and nesting.

A workflow file is input from anyone. Before the validator sees it, this module refuses what would
make parsing itself the attack: files larger than ``MAX_FILE_BYTES``, YAML alias bombs (a tiny file
whose aliases expand to billions of nodes), nesting deeper than ``MAX_DEPTH``, duplicate keys (the
last one silently winning hides a mistake), integers too long to parse, and strings the operating
system cannot take (NUL bytes, lone surrogates). Each refusal is one ``WorkflowProblem``.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from orchestrator.errors import WorkflowError, WorkflowProblem

MAX_FILE_BYTES = 64 * 1024 * 1024  # a 100,000-job workflow is ~15 MB of YAML
MAX_NODES = 5_000_000  # values after every YAML alias is expanded
MAX_DEPTH = 64  # the schema needs 5 levels; anything far deeper is not a workflow


def parse_text(text: str, name: str) -> Any:
    """JSON for ``*.json``, else YAML (a superset of JSON); raise ``WorkflowError`` on anything hostile."""
    if len(text) > MAX_FILE_BYTES:
        _refuse(name, f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        data = _json(text, name) if name.endswith(".json") else _yaml(text, name)
    except RecursionError:
        _refuse(name, f"is nested deeper than {MAX_DEPTH} levels")
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        digits = "digits" in str(exc) and "integer" in str(exc)
        _refuse(name, "has a number too long to read" if digits else f"cannot be read: {_first_line(exc)}")
    _check_depth(data, name)
    return data


def _json(text: str, name: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise _Duplicate(key)
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except _Duplicate as exc:
        _refuse(name, f"duplicate key {exc.key!r} (the last one would silently win)")
    except json.JSONDecodeError as exc:
        _refuse(name, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _yaml(text: str, name: str) -> Any:
    import yaml

    try:
        loader = _loader_class()(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node, name)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or _first_line(exc)
        _refuse(name, f"invalid YAML{where}: {problem}")


@functools.cache
def _loader_class() -> type:
    """A SafeLoader that refuses duplicate keys (built once, on first use: yaml is imported lazily)."""
    import yaml
    from yaml.constructor import ConstructorError

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # `<<: *defaults` may be overridden on purpose
                    key = (key_node.tag, key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
                    if key is not None and key in seen:
                        raise ConstructorError(
                            None,
                            None,
                            f"duplicate key {key_node.value!r} (the last one would silently win)",
                            key_node.start_mark,
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Loader


def _check_expansion(root: Any, name: str) -> None:
    """Count the values the document would have once every alias is expanded, without expanding it.

    Aliases share nodes, so sizes are memoized per node: linear in the file, however big the bomb.
    """
    import yaml

    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node, yaml)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_NODES:
                _refuse(name, f"expands to more than {MAX_NODES:,} values (YAML aliases): refused")
            continue
        if key in sizes:
            continue
        if key in on_path:
            _refuse(name, "has a recursive YAML alias")
        on_path.add(key)
        stack.append((node, True))
        if len(on_path) > MAX_DEPTH * 4:  # nodes, not values: keys count as levels here
            _refuse(name, f"is nested deeper than {MAX_DEPTH} levels")
        stack.extend((c, False) for c in _children(node, yaml) if id(c) not in sizes)


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_depth(data: Any, name: str) -> None:
    # Only containers are walked: a 100,000-job file has half a million scalars to skip.
    stack = [(data, 0)] if isinstance(data, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH or (depth == MAX_DEPTH and value):  # its items would be deeper
            _refuse(name, f"is nested deeper than {MAX_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in children if isinstance(v, dict | list))


def bad_string(value: str) -> str | None:
    """Why the operating system cannot take ``value`` as an argument, variable or path (None: it can)."""
    if "\x00" in value:
        return "contains a NUL byte"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def summary(value: Any, width: int = 60) -> str:
    """A short description of a value for a message, in bounded time and memory whatever its size."""
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, str):
        text = json.dumps(value[: width + 1])
        return text if len(value) <= width else text[: width - 4] + '..."'
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**width:
        return f"an integer of {len(str(abs(value)))} digits"
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _refuse(name: str, message: str):
    raise WorkflowError([WorkflowProblem(name, message)])


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
