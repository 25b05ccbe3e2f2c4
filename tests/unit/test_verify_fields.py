"""IMAGES.md ``verify:`` for keyless upstreams: strict, with the file and line of what is wrong."""

from __future__ import annotations

import pytest

from airgap import imagesfile
from airgap.errors import InputError

SOURCE = "ghcr.io/vendor/app:1.0"


def _load(tmp_path, verify: str):
    md = tmp_path / "IMAGES.md"
    md.write_text("# Images\n\n```yaml airgap\nrelease: 1.0.0\nimages:\n  - name: app\n"
                  f"    source: {SOURCE}\n    verify:\n{verify}```\n")
    return imagesfile.load(md)


def test_keyless_verify_fields_parse(tmp_path):
    images = _load(tmp_path, "      identity-regexp: https://github.com/vendor/.+\n"
                             "      issuer: https://token.actions.githubusercontent.com\n"
                             "      trusted-root: sigstore/trusted_root.json\n")
    entry = images.images[0]
    assert entry.verifies and entry.verify_key is None
    spec = entry.verify_keyless
    assert spec is not None and spec.identity is None and spec.identity_regexp == "https://github.com/vendor/.+"
    assert spec.issuer == "https://token.actions.githubusercontent.com" and spec.trusted_root == "sigstore/trusted_root.json"
    assert spec.line == 9


def test_key_based_verify_keeps_its_meaning(tmp_path):
    entry = _load(tmp_path, "      key: vendor.pub\n      identity: docker.io/vendor/app\n").images[0]
    assert entry.verify_key == "vendor.pub" and entry.verify_identity == "docker.io/vendor/app"
    assert entry.verify_keyless is None


@pytest.mark.parametrize("verify, words", [
    ("      identity: a@example.com\n      trusted-root: r.json\n", "exactly one of issuer: or issuer-regexp:"),
    ("      issuer: https://x\n      trusted-root: r.json\n", "exactly one of identity: or identity-regexp:"),
    ("      identity: a@example.com\n      identity-regexp: .*\n      issuer: https://x\n      trusted-root: r.json\n",
     "exactly one of identity:"),
    ("      identity: a@example.com\n      issuer: https://x\n", "needs trusted-root: PATH"),
    ("      identity: a@example.com\n      issuer-regexp: '('\n      trusted-root: r.json\n",
     "IMAGES.md:10: verify: issuer-regexp: '(' is not a regular expression"),
    ("      identity: a@example.com\n      issuer: https://x\n      trusted-root: r.json\n      subject: x\n",
     "IMAGES.md:12: unknown key 'subject' in verify:"),
    ("      identity: ''\n      issuer: https://x\n      trusted-root: r.json\n", "identity: must be a non-empty"),
    ("      key: vendor.pub\n      issuer: https://x\n", "keyless, it takes identity:"),
])
def test_bad_keyless_verify_is_one_line_with_file_and_line(tmp_path, verify, words):
    with pytest.raises(InputError) as exc:
        _load(tmp_path, verify)
    assert words in str(exc.value) and "IMAGES.md:" in str(exc.value) and "\n" not in str(exc.value)
