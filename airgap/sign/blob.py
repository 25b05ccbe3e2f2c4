"""``cosign sign-blob``-compatible signatures: base64 of an ECDSA P-256 SHA-256 DER signature over the
exact bytes. ``cosign verify-blob --key cosign.pub --signature F.sig --insecure-ignore-tlog F`` accepts them.
"""

from __future__ import annotations

import base64

from airgap.errors import SignatureError
from airgap.sign.keys import PrivateKey, PublicKey


def sign_blob(key: PrivateKey, data: bytes) -> bytes:
    return base64.b64encode(key.sign(data))


def verify_blob(key: PublicKey, data: bytes, signature_b64: bytes, what: str) -> None:
    try:
        signature = base64.b64decode(signature_b64.strip(), validate=True)
    except (ValueError, TypeError):
        raise SignatureError(f"{what}: signature is not base64") from None
    if not key.verify(signature, data):
        raise SignatureError(f"{what}: signature does not verify with {key.source} "
                             "(tampered, or signed by another key)")
