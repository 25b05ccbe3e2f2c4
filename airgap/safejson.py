"""JSON from untrusted bytes with its cost bounded before it is parsed.

``json.loads`` builds one Python object per value, some 20-60 times the bytes they came from, and
recurses once per nesting level. So: the size is capped; the structural bytes (``[ { , :``) are
counted first, an upper bound on the number of values (strings may hold some too), so a document
that would cost too much memory is refused while it is still bytes; deep nesting is refused (the
parser's own recursion guard, then a walk over the result against the caller's depth limit).
"""

from __future__ import annotations

import json
from typing import Any

from airgap import limits


class JSONLimitError(ValueError):
    """The document breaks a size, depth or count limit; the message says which."""


def _int(text: str) -> int:
    # int() of a long digit string is quadratic (and limited only since Python 3.11): no field needs
    # more than 19 digits.
    if len(text) > limits.JSON_INT_DIGITS:
        raise JSONLimitError(f"an integer of {len(text)} digits")
    return int(text)


def loads(data: bytes, *, max_bytes: int, max_depth: int = limits.JSON_DEPTH,
          max_tokens: int = limits.JSON_TOKENS) -> Any:
    """Parse ``data``; raises JSONLimitError past a limit, ValueError when it is not JSON."""
    if len(data) > max_bytes:
        raise JSONLimitError(f"{len(data)} bytes, over the {max_bytes}-byte limit")
    tokens = sum(data.count(c) for c in (b"[", b"{", b",", b":"))
    if tokens > max_tokens:
        raise JSONLimitError(f"over {max_tokens} values")
    try:
        doc = json.loads(data, parse_int=_int)
    except RecursionError:
        raise JSONLimitError(f"nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    stack = [(doc, 1)]
    while stack:  # iterative: the depth check itself must not recurse
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > max_depth:
                    raise JSONLimitError(f"nested deeper than {max_depth} levels")
                stack.append((child, depth + 1))
    return doc
