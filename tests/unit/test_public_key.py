"""cosign public keys are read without cryptography's serialization package when they are what cosign
writes (one P-256 SubjectPublicKeyInfo in PEM): the same key, PEM and fingerprint as cryptography's own
reader gives, and every other key still goes through that reader, with its errors."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airgap.errors import KeyFileError
from airgap.sign.keys import generate, load_public_key


def _spki(key, encoding=serialization.Encoding.PEM) -> bytes:
    return key.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_p256_key_reads_as_cryptography_reads_it(tmp_path):
    for n in range(20):
        pub = generate().public.key
        path = tmp_path / f"k{n}.pub"
        path.write_bytes(_spki(pub))
        key = load_public_key(path)
        assert key.key.public_numbers() == pub.public_numbers()
        assert key.pem() == _spki(pub)
        assert key.der == _spki(pub, serialization.Encoding.DER)
        assert key.verify(generate().sign(b"x"), b"x") is False


def test_other_keys_take_cryptography_reader_and_its_errors(tmp_path):
    compressed = tmp_path / "compressed.pub"  # P-256 too, but not the form cosign writes
    pub = generate().public.key
    compressed.write_bytes(b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(
        bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")
        + pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint))
        + b"-----END PUBLIC KEY-----\n")
    assert load_public_key(compressed).key.public_numbers() == pub.public_numbers()
    p384 = tmp_path / "p384.pub"
    p384.write_bytes(_spki(ec.generate_private_key(ec.SECP384R1()).public_key()))
    with pytest.raises(KeyFileError, match="curve secp384r1 is not supported"):
        load_public_key(p384)
    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(_spki(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()))
    with pytest.raises(KeyFileError, match="RSAPublicKey keys are not supported"):
        load_public_key(rsa_pub)
    off_curve = tmp_path / "off.pub"
    der = bytearray(_spki(pub, serialization.Encoding.DER))
    der[-1] ^= 1  # no longer a point of the curve
    off_curve.write_bytes(b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(bytes(der))
                          + b"-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(off_curve)


def test_reading_a_public_key_imports_no_serialization_package(tmp_path):
    path = tmp_path / "k.pub"
    path.write_bytes(_spki(generate().public.key))
    code = ("import sys; from airgap.sign.keys import load_public_key; k = load_public_key(sys.argv[1]); "
            "k.pem(); k.fingerprint; "
            "print('cryptography.hazmat.primitives.serialization' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
