"""The rules for every name that ends up in a registry URL, a tar member or a file path.

One set, used for IMAGES.md and for what a bundle says (a bundle crosses a trust boundary, so its
manifest gets exactly the checks IMAGES.md gets). Each function returns ``None`` when the value is
fine, else a short phrase saying what is wrong, for the caller to put after the field's name.
"""

from __future__ import annotations

import re

from airgap import limits
from airgap.model.reference import HOST_RE, valid_repository, valid_tag

MAX_REPOSITORY = limits.REPOSITORY_NAME
VALUES_PATH = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$")  # no leading dot, no separators
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
_PLATFORM = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}/[a-z0-9][a-z0-9_.-]{0,31}(/[a-z0-9][a-z0-9_.-]{0,31})?$")


def repository_problem(name: str) -> str | None:
    """A repository under the target prefix: OCI name grammar, no host part, no ``..``."""
    if not name or len(name) > MAX_REPOSITORY:
        return f"must be 1 to {MAX_REPOSITORY} characters"
    if not valid_repository(name):
        return "is not a valid repository name (lower-case letters, digits, . _ - and /)"
    first, sep, _ = name.partition("/")
    if sep and ("." in first or first == "localhost"):
        return f"starts with a registry host ({first}); names are relative to --registry HOST/PREFIX"
    return None


def tag_problem(tag: str) -> str | None:
    return None if valid_tag(tag) else "is not a valid tag (ASCII letters, digits, _ . -, at most 128)"


def digest_problem(digest: str) -> str | None:
    return None if _DIGEST.match(digest) else "is not a digest (sha256:<64 hex digits>)"


def hex64_problem(value: str) -> str | None:
    return None if _HEX64.match(value) else "is not a sha256 (64 lower-case hex digits)"


def values_path_problem(path: str) -> str | None:
    if len(path) > 256 or not VALUES_PATH.match(path):
        return "must be a dotted path into the chart's values, like opensearch.image"
    if path.split(".")[0] in ("image", "global"):
        return f"would overwrite the chart's top-level {path.split('.')[0]}: settings"
    return None


def file_name_problem(name: str) -> str | None:
    """One path component: no separators, no ``..`` or leading dot, nothing a shell or tar treats specially."""
    return None if _FILE_NAME.match(name) else "is not a plain file name (letters, digits, . _ + -)"


def relative_path_problem(path: str) -> str | None:
    """A relative path of plain file names: never absolute, never ``..``, never empty components."""
    if path.startswith("/"):
        return "is an absolute path"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, . or .. component"
    bad = next((p for p in parts if file_name_problem(p)), None)
    return f"has a component {bad!r} that is not a plain file name" if bad else None


def platform_problem(text: str) -> str | None:
    return None if _PLATFORM.match(text) else "is not OS/ARCH[/VARIANT]"


def identity_problem(identity: str) -> str | None:
    """A docker-reference without tag: HOST/REPOSITORY (what cosign signatures name)."""
    host, sep, path = identity.partition("/")
    if not sep or not HOST_RE.match(host) or not valid_repository(path) or len(identity) > 512:
        return "is not HOST/REPOSITORY"
    return None
