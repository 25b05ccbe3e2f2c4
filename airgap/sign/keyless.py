"""Keyless (Fulcio certificate + transparency log) verification of Sigstore bundles, offline.

The cryptography is the ``sigstore`` package's (sigstore-python ``Verifier`` with a ``TrustedRoot``
read from a file, never TUF): the certificate chains to the trusted root's Fulcio CA at a verified
time, its SCT verifies against the root's CT logs, the log entry's inclusion proof, checkpoint and
promise verify against the root's transparency logs (or an RFC 3161 timestamp against its TSAs),
and the DSSE envelope against the certificate's key. What is written here is the policy: the
certificate's identity (SAN: e-mail, URI or Sigstore other-name) and OIDC issuer (extension
1.3.6.1.4.1.57264.1.8, or the older .1.1), each exact or a regular expression matched whole, like
cosign's ``--certificate-identity[-regexp]`` / ``--certificate-oidc-issuer[-regexp]``.

``sigstore`` needs Python 3.10: it is the ``keyless`` extra (``pip install 'airgap-oci[keyless]'``);
without it keyless checks fail with a message that says so, and key-based ones still work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap.errors import InputError, SignatureError
from airgap.sign.dsse import Envelope

OIDC_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
OIDC_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
SIGSTORE_OTHERNAME = "1.3.6.1.4.1.57264.1.7"
TRUSTED_ROOT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class KeylessTrust:
    """Who must have signed: an identity and an issuer (exact or regexp) under a trusted root."""

    trusted_root: Path
    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None
    issuer_regexp: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regexp is None):
            raise InputError("keyless verification needs exactly one of identity: or identity-regexp:")
        if (self.issuer is None) == (self.issuer_regexp is None):
            raise InputError("keyless verification needs exactly one of issuer: or issuer-regexp:")
        for what, pattern in (("identity-regexp", self.identity_regexp), ("issuer-regexp", self.issuer_regexp)):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise InputError(f"{what}: {pattern!r} is not a regular expression ({exc})") from None

    @property
    def fingerprint(self) -> str:
        """Names the trust in reports and records: ``keyless:<identity> @ <issuer>``."""
        ident = self.identity if self.identity is not None else f"~{self.identity_regexp}"
        issuer = self.issuer if self.issuer is not None else f"~{self.issuer_regexp}"
        return f"keyless:{ident} @ {issuer}"

    @property
    def source(self) -> str:
        return str(self.trusted_root)

    def to_json(self) -> dict:
        out = {k: v for k, v in (("identity", self.identity), ("identity-regexp", self.identity_regexp),
                                 ("issuer", self.issuer), ("issuer-regexp", self.issuer_regexp)) if v is not None}
        return out

    def check_certificate(self, cert: Any) -> tuple[str, str]:
        """(identity, issuer) of ``cert`` when they match; SignatureError naming both otherwise."""
        identities = certificate_identities(cert)
        issuer = certificate_issuer(cert)
        if self.issuer is not None and issuer != self.issuer:
            raise SignatureError(f"certificate issuer is {issuer!r}, not {self.issuer!r}")
        if self.issuer_regexp is not None and not re.fullmatch(self.issuer_regexp, issuer or ""):
            raise SignatureError(f"certificate issuer {issuer!r} does not match {self.issuer_regexp!r}")
        for ident in identities:
            if self.identity is not None and ident == self.identity:
                return ident, issuer
            if self.identity_regexp is not None and re.fullmatch(self.identity_regexp, ident):
                return ident, issuer
        wanted = self.identity if self.identity is not None else f"a match of {self.identity_regexp!r}"
        raise SignatureError(f"certificate identity is {', '.join(map(repr, identities)) or 'empty'}, not {wanted}")


def certificate_identities(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [*san.get_values_for_type(x509.RFC822Name), *san.get_values_for_type(x509.UniformResourceIdentifier)]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id.dotted_string == SIGSTORE_OTHERNAME:
            out.append(_der_utf8(other.value))
    return out


def certificate_issuer(cert: Any) -> str:
    from cryptography import x509

    for oid, der in ((OIDC_ISSUER_V2, True), (OIDC_ISSUER_V1, False)):
        try:
            raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except x509.ExtensionNotFound:
            continue
        return _der_utf8(raw) if der else raw.decode("utf-8", "replace")
    return ""


def _der_utf8(raw: bytes) -> str:
    """A DER UTF8String (tag 0x0C); raw text when it is not one (older Fulcio wrote plain bytes)."""
    if len(raw) >= 2 and raw[0] == 0x0C:
        n, start = raw[1], 2
        if n & 0x80:
            width = n & 0x7F
            n, start = int.from_bytes(raw[2:2 + width], "big"), 2 + width
        return raw[start:start + n].decode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


class _Policy:
    """A sigstore ``VerificationPolicy``: our identity/issuer rules, with our messages."""

    def __init__(self, trust: KeylessTrust):
        self.trust = trust
        self.matched: tuple[str, str] | None = None

    def verify(self, cert: Any) -> None:
        self.matched = self.trust.check_certificate(cert)


@dataclass(frozen=True)
class KeylessResult:
    envelope: Envelope
    identity: str
    issuer: str


def available() -> bool:
    try:
        import sigstore.verify  # noqa: F401
    except ImportError:
        return False
    return True


def verify_bundle(bundle_json: bytes, trust: KeylessTrust) -> KeylessResult:
    """Verify a DSSE Sigstore bundle keyless and offline; raises SignatureError with the reason."""
    try:
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle, TrustedRoot
        from sigstore.verify import Verifier
    except ImportError:
        raise SignatureError("keyless verification needs the sigstore package: pip install 'airgap-oci[keyless]' "
                             "(Python 3.10 or newer)") from None
    try:
        root = TrustedRoot.from_file(str(trust.trusted_root))
    except OSError as exc:
        raise InputError(f"trusted root {trust.trusted_root}: {exc.strerror}") from None
    except (SigstoreError, ValueError) as exc:
        raise InputError(f"trusted root {trust.trusted_root} is not a Sigstore trusted_root.json: "
                         f"{_one_line(exc)}") from None
    try:
        bundle = Bundle.from_json(bundle_json)
    except (SigstoreError, ValueError) as exc:
        raise SignatureError(f"not a valid Sigstore bundle: {_one_line(exc)}") from None
    policy = _Policy(trust)
    try:
        payload_type, payload = Verifier(trusted_root=root).verify_dsse(bundle, policy)
    except SignatureError:
        raise
    except (SigstoreError, ValueError) as exc:
        raise SignatureError(f"keyless signature rejected: {_one_line(exc)}") from None
    assert policy.matched is not None
    envelope = Envelope(payload_type, payload, [])
    return KeylessResult(envelope, *policy.matched)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
