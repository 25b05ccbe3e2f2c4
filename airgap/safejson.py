"""JSON from untrusted bytes with its cost bounded before it is parsed.

``json.loads`` recurses once per nesting level (a few thousand ``[`` end in RecursionError, a bug's
traceback) and builds one Python object per value, some 20-60 times the bytes they came from. A
pre-scan over the raw bytes, with strings blanked out, counts the nesting depth and the structural
tokens (``{ [ , :``) so a hostile document is refused while it is still bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_STRUCTURAL = bytes(b for b in range(256) if b not in b"[]{},:")


class JSONLimitError(ValueError):
    """The document breaks a size, depth or count limit; the message says which."""


def loads(data: bytes, *, max_bytes: int, max_depth: int = 32, max_tokens: int = 1_000_000) -> Any:
    """Parse ``data``; raises JSONLimitError past a limit, ValueError when it is not JSON."""
    if len(data) > max_bytes:
        raise JSONLimitError(f"{len(data)} bytes, over the {max_bytes}-byte limit")
    skeleton = _STRING.sub(b'""', data).translate(None, _STRUCTURAL)
    if len(skeleton) > max_tokens:
        raise JSONLimitError(f"over {max_tokens} values")
    depth = deepest = 0
    for byte in skeleton:
        if byte in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > max_depth:
                    raise JSONLimitError(f"nested deeper than {max_depth} levels")
        elif byte in b"]}":
            depth -= 1
    try:
        return json.loads(data)
    except RecursionError:  # unreachable with the scan above; kept so no input can reach a traceback
        raise JSONLimitError(f"nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
