"""cosign key pairs.

Private keys are stored as cosign writes them: a PEM block whose body is JSON describing scrypt key
derivation and a nacl/secretbox ciphertext of the PKCS#8 DER key (go-securesystemslib's ``encrypted``
format). cosign itself writes the label ``ENCRYPTED SIGSTORE PRIVATE KEY`` since 2.x; we write the
older ``ENCRYPTED COSIGN PRIVATE KEY`` label, which every cosign and containers/image release reads,
and read both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from airgap import limits
from airgap.errors import InputError, KeyFileError
from airgap.fsutil import atomic_write

WRITE_LABEL = "ENCRYPTED COSIGN PRIVATE KEY"
READ_LABELS = ("ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
ACCEPTED_N = (32768, 65536)  # cosign writes 32768; some releases and tools wrote 65536
_PEM_RE = re.compile(r"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.S)
# A P-256 public key's DER SubjectPublicKeyInfo is this fixed prefix (SEQUENCE { id-ecPublicKey,
# prime256v1 }, BIT STRING) and the 65-byte uncompressed point. Reading and writing that form here
# keeps cryptography's serialization package (its SSH, PKCS#12 and cipher modules: ~25 M instructions,
# some 10 ms of every verifying command's start) off the verify path; anything else takes
# cryptography's own reader.
_P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
_PUBLIC_PEM_RE = re.compile(rb"\A\s*-----BEGIN PUBLIC KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END PUBLIC KEY-----\s*\Z")


KeyError_ = KeyFileError  # the name callers and tests know; the class lives in airgap.errors


@dataclass(frozen=True)
class PublicKey:
    key: ec.EllipticCurvePublicKey
    source: str

    @property
    def der(self) -> bytes:
        """The DER SubjectPublicKeyInfo (of a P-256 key: _check_p256 admits no other)."""
        numbers = self.key.public_numbers()
        return _P256_SPKI_PREFIX + b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")

    @property
    def fingerprint(self) -> str:
        """sha256 of the DER SubjectPublicKeyInfo: names the key in bundle manifests and reports."""
        return "sha256:" + hashlib.sha256(self.der).hexdigest()

    def pem(self) -> bytes:
        """PEM as OpenSSL writes it (64-column base64), byte for byte what cosign.pub holds."""
        body = base64.b64encode(self.der).decode()
        lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        return f"-----BEGIN PUBLIC KEY-----\n{lines}\n-----END PUBLIC KEY-----\n".encode()

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            return False


@dataclass(frozen=True)
class PrivateKey:
    key: ec.EllipticCurvePrivateKey
    source: str

    def __repr__(self) -> str:
        return f"PrivateKey(source={self.source!r})"

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key(), self.source)

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 over SHA-256, ASN.1 DER: what cosign produces and verifies."""
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def _check_p256(key: object, source: str) -> None:
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        raise KeyError_(f"{source}: {type(key).__name__.lstrip('_')} keys are not supported; "
                        "airgap signs and verifies with ECDSA P-256 keys (cosign generate-key-pair)")
    if not isinstance(key.curve, ec.SECP256R1):
        raise KeyError_(f"{source}: EC curve {key.curve.name} is not supported; use P-256 (cosign's default)")


def _kdf(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    # 256 MiB covers N=65536, r=8 (64 MiB) with room; OpenSSL's default cap would refuse it.
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=limits.SCRYPT_MAXMEM)


def encrypt_private_key(key: PrivateKey, password: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from nacl.secret import SecretBox

    der = key.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    salt = os.urandom(32)
    nonce = os.urandom(SecretBox.NONCE_SIZE)
    box = SecretBox(_kdf(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    ciphertext = box.encrypt(der, nonce).ciphertext
    doc = {"kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                   "salt": base64.b64encode(salt).decode()},
           "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
           "ciphertext": base64.b64encode(ciphertext).decode()}
    body = base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {WRITE_LABEL}-----\n" + "\n".join(lines) + f"\n-----END {WRITE_LABEL}-----\n").encode()


def _is_pkcs8(der: bytes) -> bool:
    """PKCS#8 PrivateKeyInfo is SEQUENCE { INTEGER, SEQUENCE (algorithm), OCTET STRING }; SEC1's
    ECPrivateKey has an OCTET STRING second. cosign only ever writes PKCS#8 and rejects SEC1."""
    try:
        i = 1
        i += 1 + (der[i] & 0x7F if der[i] & 0x80 else 0)  # outer length
        if der[i] != 0x02:
            return False
        i += 2 + der[i + 1]  # INTEGER version
        return der[i] == 0x30
    except IndexError:
        return False


def load_private_key(path: Path, password: bytes) -> PrivateKey:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyError_(f"key file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyError_(f"{path}: cannot read key ({exc.__class__.__name__})") from None
    m = _PEM_RE.search(text)
    if not m:
        raise KeyError_(f"{path}: not a PEM key file")
    label = m.group(1)
    if label not in READ_LABELS:
        raise KeyError_(f"{path}: PEM block {label!r} is not a cosign private key "
                        f"(expected {' or '.join(READ_LABELS)})")
    try:
        doc = json.loads(base64.b64decode("".join(m.group(2).split())))
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"])
        nonce = base64.b64decode(cipher["nonce"])
        ciphertext = base64.b64decode(doc["ciphertext"])
    except (ValueError, KeyError, TypeError):
        raise KeyError_(f"{path}: malformed encrypted key") from None
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise KeyError_(f"{path}: unsupported key encryption {kdf.get('name')}/{cipher.get('name')}")
    if n not in ACCEPTED_N or (r, p) != (8, 1):
        raise KeyError_(f"{path}: unsupported scrypt parameters N={n} r={r} p={p}")
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    try:
        der = SecretBox(_kdf(password, salt, n, r, p)).decrypt(ciphertext, nonce)
    except CryptoError:
        raise KeyError_(f"{path}: wrong password for this key") from None
    if not _is_pkcs8(der):
        raise KeyError_(f"{path}: the key inside is not PKCS#8 (an SEC1 EC key?); cosign does not accept it either")
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_der_private_key(der, password=None)
    _check_p256(key, str(path))
    return PrivateKey(key, str(path))  # type: ignore[arg-type]  # _check_p256 refused all but EC keys


def load_public_key(path: Path) -> PublicKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyError_(f"public key {path} not found") from None
    fast = _p256_public_key(data)
    if fast is not None:
        return PublicKey(fast, str(path))
    from cryptography.hazmat.primitives import serialization
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        if b"PRIVATE KEY" in data:
            raise KeyError_(f"{path} is a private key; verification takes the public key (cosign.pub)") from None
        raise KeyError_(f"{path}: not a PEM public key") from None
    _check_p256(key, str(path))
    return PublicKey(key, str(path))  # type: ignore[arg-type]  # _check_p256 refused all but EC keys


def _p256_public_key(pem: bytes) -> ec.EllipticCurvePublicKey | None:
    """The key of a PEM file holding exactly one P-256 SubjectPublicKeyInfo (what cosign writes), else
    None: the caller then reads it with cryptography's full PEM reader, with its errors."""
    m = _PUBLIC_PEM_RE.match(pem)
    if m is None:
        return None
    try:
        der = base64.b64decode(b"".join(m.group(1).split()), validate=True)
    except ValueError:
        return None
    if len(der) != len(_P256_SPKI_PREFIX) + 65 or not der.startswith(_P256_SPKI_PREFIX):
        return None
    try:  # checks that the point is on the curve, as loading the DER would
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), der[len(_P256_SPKI_PREFIX):])
    except ValueError:
        return None


def generate() -> PrivateKey:
    return PrivateKey(ec.generate_private_key(ec.SECP256R1()), "generated")


def write_key_pair(prefix: Path, password: bytes) -> tuple[Path, Path]:
    key = generate()
    priv, pub = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for p in (priv, pub):
        if p.exists():
            raise InputError(f"{p} already exists; refusing to overwrite a key")
    atomic_write(priv, encrypt_private_key(key, password), mode=0o600)
    atomic_write(pub, key.public.pem())
    return priv, pub


def password_from_env_or_prompt(confirm: bool = False) -> bytes:
    """COSIGN_PASSWORD (as cosign reads it), else a prompt on the terminal; never echoed or logged."""
    env = os.environ.get("COSIGN_PASSWORD")
    if env is not None:
        return env.encode()
    import click

    if sys.stdin is None or not sys.stdin.isatty():  # click.get_text_stream is deprecated in click 8.2
        raise InputError("no key password: set COSIGN_PASSWORD (there is no terminal to ask on)")
    pw = click.prompt("Key password", hide_input=True, confirmation_prompt=confirm, default="", show_default=False,
                      err=True)
    return pw.encode()
