"""YAML from files we did not write (IMAGES.md, Chart.yaml), parsed with its cost bounded.

PyYAML's safe loader still expands aliases: nine lines of ``&a [*b, *b, ...]`` become billions of
nodes (the "billion laughs"), and even the node graph ``yaml.compose`` returns explodes as soon as
anything walks it. This loader refuses aliases outright (none of these files needs them), caps the
input size, the nesting depth and the number of nodes, and raises ``yaml.MarkedYAMLError`` with the
line of the offence, so callers' existing ``except yaml.YAMLError`` report it like any YAML error.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent

from airgap import limits

MAX_BYTES = limits.YAML_BYTES
MAX_DEPTH = limits.YAML_DEPTH
MAX_NODES = limits.YAML_NODES


class YAMLLimitError(yaml.MarkedYAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str, max_depth: int, max_nodes: int):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._max_depth = max_depth
        self._max_nodes = max_nodes

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise YAMLLimitError(problem=f"aliases (*{event.anchor}) are not allowed in this file",
                                 problem_mark=event.start_mark)
        self._nodes += 1
        if self._nodes > self._max_nodes:
            raise YAMLLimitError(problem=f"more than {self._max_nodes} YAML nodes", problem_mark=event.start_mark)
        nested = isinstance(event, CollectionStartEvent)
        if nested:
            self._depth += 1
            if self._depth > self._max_depth:
                raise YAMLLimitError(problem=f"nested deeper than {self._max_depth} levels",
                                     problem_mark=event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


def describe(exc: yaml.YAMLError) -> str:
    """One line for a user: ``line N: problem`` (PyYAML's own str() spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark else problem


def _text(data: str | bytes, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise YAMLLimitError(problem=f"{len(data)} bytes, over the {max_bytes}-byte limit for this file")
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YAMLLimitError(problem=f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return data


def compose(data: str | bytes, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
            max_nodes: int = MAX_NODES) -> yaml.Node | None:
    """The node graph of one document (keeps line numbers for error messages), without aliases."""
    loader = _BoundedLoader(_text(data, max_bytes), max_depth, max_nodes)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def load(data: str | bytes, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
         max_nodes: int = MAX_NODES) -> Any:
    """Like ``yaml.safe_load`` of one document, within the limits and without aliases."""
    loader = _BoundedLoader(_text(data, max_bytes), max_depth, max_nodes)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
