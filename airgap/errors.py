"""User-facing errors.

Every failure a user can cause or meet (bad input, unreachable registry, corrupt bundle) is raised as
an :class:`AirgapError` subclass whose message is written for that user and names the file, line,
image or registry at fault. The CLI catches them in exactly one place, prints one line and exits with
the class's ``exit_code``; anything else is a bug and keeps its traceback.

    AirgapError                 exit 1
    ├── InputError              exit 2  bad IMAGES.md, bad reference, missing file, bad flag combination
    ├── BundleError             exit 3  corrupt, truncated or incomplete bundle; digest mismatch
    │   └── DigestMismatch
    ├── RegistryError           exit 4  network, TLS, HTTP errors from a registry
    │   ├── AuthError                   401/403, with the registry's own message
    │   ├── TransientError              worth retrying from the start (the copy engine does)
    │   └── NotFound                    manifest or blob unknown
    └── BuildError              exit 5  an image build failed, or no builder (dockerd, buildah) is usable
"""

from __future__ import annotations


class AirgapError(Exception):
    exit_code = 1


class InputError(AirgapError):
    exit_code = 2


class BundleError(AirgapError):
    exit_code = 3


class DigestMismatch(BundleError):
    def __init__(self, what: str, expected: str, actual: str):
        super().__init__(f"{what}: content digest is {actual}, expected {expected} (corrupt or tampered)")
        self.expected = expected
        self.actual = actual


class RegistryError(AirgapError):
    exit_code = 4


class AuthError(RegistryError):
    pass


class NotFound(RegistryError):
    pass


class TransientError(RegistryError):
    """A failure worth retrying from the start (connection reset mid-upload, an expired token renewed);
    the copy engine retries on it without knowing which place raised it."""


class BuildError(AirgapError):
    """A build failed (the message ends with the last lines of its log) or no builder can run."""
    exit_code = 5


class ManifestBlobUnknown(RegistryError):
    """A manifest push refused because the registry lacks a blob or child manifest it references,
    although HEAD said it was there (Nexus 3, nexus-public#264); the copy engine re-uploads and retries."""


class RateLimited(RegistryError):
    """A registry's rate limit (Docker Hub's pull limit): the message says how long to wait."""
