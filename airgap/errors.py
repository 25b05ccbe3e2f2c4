"""User-facing errors: one tree.

Every failure a user can cause or meet (bad input, unreachable registry, corrupt bundle) is raised as
an :class:`AirgapError` subclass whose message is written for that user and names the file, line,
image or registry at fault. The CLI catches them in exactly one place (``airgap.cli.main``), prints
one line and exits with the class's ``exit_code``; anything else is a bug and keeps its traceback.

    AirgapError                 exit 1  (no branch fits)
    ├── InputError              exit 2  bad IMAGES.md, bad reference, missing file, bad flag combination
    │   └── KeyFileError                a key file that cannot be used (wrong password, type, format)
    ├── OutputError             exit 2  an output path that cannot be written as asked (kind, link, space)
    ├── BundleError             exit 3  corrupt, truncated or incomplete bundle
    │   ├── DigestMismatch              content whose digest or size is not the one it claims
    │   ├── MissingBlobs                blobs neither in the bundle nor in the target (delta without base)
    │   └── DowngradeRefused            an older release than the one the target already holds
    ├── SignatureError          exit 3  a signature is missing or does not verify
    ├── RegistryError           exit 4  network, TLS, HTTP errors from any registry
    │   ├── AuthError                   401/403, with the registry's own message
    │   ├── NotFound                    manifest or blob unknown
    │   ├── RateLimited                 a pull limit: the message says how long to wait
    │   ├── ManifestBlobUnknown         a manifest push refused for a blob HEAD said was there
    │   └── Transient                   worth retrying from the start (the copy engine does)
    ├── TargetError             exit 4  the target registry's kind or settings refuse what the load needs
    │   └── TagConflict                 a tag that holds other content and may not move
    └── BuildError              exit 5  an image build failed, or no builder (dockerd, buildah) is usable

The exit codes are an interface (scripts test them), so a new branch reuses the code of the family it
belongs to: signatures are part of verifying a bundle (3), the target is a registry (4), an output path
is the user's input (2). Parse-level limit errors (``safejson.JSONLimitError``,
``safeyaml.YAMLLimitError``) stay outside the tree on purpose: they are ``ValueError``/``YAMLError``
that the caller turns into an InputError or BundleError naming the file or member.

This module imports nothing from airgap, so every layer (model, places, registry client, copy
engine) can raise these without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airgap.model.descriptor import Descriptor


class AirgapError(Exception):
    exit_code = 1


# --- input (2) -------------------------------------------------------------------------------------

class InputError(AirgapError):
    exit_code = 2


class KeyFileError(InputError):
    """A key file that cannot be used: wrong password, wrong type, malformed."""


class OutputError(AirgapError):
    """An output path that cannot be written as asked (wrong kind, link, read-only, no space)."""

    exit_code = 2


# --- bundle and signatures (3) ---------------------------------------------------------------------

class BundleError(AirgapError):
    exit_code = 3


class DigestMismatch(BundleError):
    def __init__(self, what: str, expected: str, actual: str):
        super().__init__(f"{what}: content digest is {actual}, expected {expected} (corrupt or tampered)")
        self.expected = expected
        self.actual = actual


class MissingBlobs(BundleError):
    """Blobs the source does not hold and the destination lacks (a delta loaded without its base)."""

    def __init__(self, blobs: Sequence[Descriptor], hint: str = ""):
        self.blobs = list(blobs)
        names = ", ".join(str(b.digest) for b in blobs[:5]) + (f" and {len(blobs) - 5} more" if len(blobs) > 5 else "")
        super().__init__(f"{len(blobs)} blobs are neither in the bundle nor in the target: {names}"
                         + (f"; {hint}" if hint else "") + ". Nothing was pushed")


class DowngradeRefused(BundleError):
    """The bundle's release is older than the one the target already holds."""


class SignatureError(AirgapError):
    """An image or bundle signature is missing or does not verify."""

    exit_code = 3


# --- registries and targets (4) --------------------------------------------------------------------

class RegistryError(AirgapError):
    exit_code = 4


class AuthError(RegistryError):
    pass


class NotFound(RegistryError):
    pass


class ManifestBlobUnknown(RegistryError):
    """A manifest push refused because the registry lacks a blob or child manifest it references,
    although HEAD said it was there (Nexus 3, nexus-public#264); the copy engine re-uploads and retries."""


class RateLimited(RegistryError):
    """A registry's rate limit (Docker Hub's pull limit): the message says how long to wait."""


class Transient(RegistryError):
    """A failure worth retrying from the start (connection reset mid-upload, 5xx on a stream).

    Here rather than in the registry client so that the copy engine can retry it without importing
    the client."""


class TargetError(AirgapError):
    """The target registry's kind or settings refuse what the load needs (immutable tags, a project
    that cannot be created, a kind that cannot be detected)."""

    exit_code = 4


class TagConflict(TargetError):
    """A tag on the target holds other content and may not (or cannot) be moved."""


# --- builds (5) ------------------------------------------------------------------------------------

class BuildError(AirgapError):
    """A build failed (the message ends with the last lines of its log) or no builder can run."""

    exit_code = 5
