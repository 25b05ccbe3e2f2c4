"""Hostile attachment lists: the signed bundle manifest names every attachment an image carries, and a
load or verify trusts nothing else. A listed attachment whose subject is not the image, whose manifest
names another subject, whose bytes do not match its digest, whose type differs from what is listed, or
that is missing is refused with one line before anything is pushed; a referrer manifest in the tar
that the manifest does not list is ignored (never pushed).

The edited manifests are re-signed with the test key (hostile.py): an attacker holding the key, or a
buggy writer, gets past the signature, not past these checks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pytest

from airgap.model.mediatypes import MediaType
from helpers import airgap, module_registry
from hostile import Base, Edit, make_base

SPDX = "application/spdx+json"
EMPTY = b"{}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _member(digest: str) -> str:
    return f"oci/blobs/sha256/{digest.split(':')[1]}"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    return make_base(tmp_path_factory.mktemp("hostile-attachments"))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    with module_registry(tmp_path_factory.mktemp("attachments-registry")) as registry:
        yield registry


def _referrer(e: Edit, subject: dict, artifact_type: str = SPDX,
              payload: bytes = b'{"spdxVersion":"SPDX-2.3"}') -> bytes:
    """An SBOM referrer manifest of ``subject`` (an image entry of the manifest), its blobs added to the tar."""
    names = {i.name for i, _ in e.members}
    for data in (EMPTY, payload):
        if _member(_digest(data)) not in names:
            e.add(_member(_digest(data)), data)
    doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "artifactType": artifact_type,
           "config": {"mediaType": MediaType.OCI_EMPTY, "digest": _digest(EMPTY), "size": 2},
           "layers": [{"mediaType": artifact_type, "digest": _digest(payload), "size": len(payload)}],
           "subject": {"mediaType": subject["mediaType"], "digest": subject["digest"], "size": subject["size"]}}
    return json.dumps(doc).encode()


def _list(e: Edit, image: int, manifest: bytes, **override) -> dict:
    entry = {"digest": _digest(manifest), "subject": e.image(image)["digest"], "artifactType": SPDX,
             "mediaType": MediaType.OCI_MANIFEST, "size": len(manifest), "foundBy": "referrer"}
    entry.update(override)
    e.image(image).setdefault("attachments", []).append(entry)
    return entry


def _foreign_subject(e: Edit) -> str:
    """app lists an SBOM of multi: a subject that is not app's."""
    m = _referrer(e, e.image(1))
    e.add(_member(_digest(m)), m)
    _list(e, 0, m, subject=e.image(1)["digest"])
    return "is not the image"


def _subject_lie(e: Edit) -> str:
    """The manifest says app, the referrer itself refers to multi."""
    m = _referrer(e, e.image(1))
    e.add(_member(_digest(m)), m)
    _list(e, 0, m)
    return "its manifest's subject is"


def _digest_mismatch(e: Edit) -> str:
    m = _referrer(e, e.image(0))
    entry = _list(e, 0, m)
    altered = m.replace(b'"schemaVersion": 2', b'"schemaVersion":2 ')  # same meaning, other bytes
    assert altered != m and len(altered) == len(m)
    e.add(_member(entry["digest"]), altered)
    return f"attachment {entry['digest'][:19]}"


def _missing(e: Edit) -> str:
    m = _referrer(e, e.image(0))
    entry = _list(e, 0, m)
    return f"{entry['digest'].split(':')[1]} is missing"


def _type_lie(e: Edit) -> str:
    m = _referrer(e, e.image(0), artifact_type="application/vnd.example.vex+json")
    e.add(_member(_digest(m)), m)
    _list(e, 0, m, artifactType=SPDX)
    return "the bundle manifest says application/spdx+json"


def _missing_blob(e: Edit) -> str:
    payload = b'{"spdxVersion":"SPDX-2.3","lost":true}'
    m = _referrer(e, e.image(0), payload=payload)
    e.remove(_member(_digest(payload)))
    e.add(_member(_digest(m)), m)
    _list(e, 0, m)
    return f"needs blob {_digest(payload)}"


CASES: dict[str, Callable[[Edit], str]] = {
    "foreign-subject": _foreign_subject, "subject-lie": _subject_lie, "digest-mismatch": _digest_mismatch,
    "missing-manifest": _missing, "artifact-type-lie": _type_lie, "missing-blob": _missing_blob,
}


def _untouched(registry) -> None:
    assert registry.catalog() == []
    assert [p for p in registry.data_dir.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_listed_attachment_that_does_not_hold_is_refused_before_any_push(case, base, target, tmp_path):
    e = Edit(base)
    culprit = CASES[case](e)
    bundle = e.write(tmp_path / "b.tar")
    for args in (["load", "--key", str(base.pub), str(bundle), "--registry", f"{target.host}/x",
                  "--insecure-registry", "--values-out", str(tmp_path / "v.yaml")],
                 ["verify", str(bundle), "--key", str(base.pub)]):
        proc = airgap(*args, check=False)
        assert proc.returncode != 0, proc.stdout
        errors = [line for line in proc.stderr.splitlines() if line.startswith("airgap: error")]
        assert len(errors) == 1 and culprit in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
    _untouched(target)


def test_unlisted_referrer_in_the_tar_is_ignored(base, registry_factory, tmp_path):
    e = Edit(base)
    m = _referrer(e, e.image(0))
    e.add(_member(_digest(m)), m)   # in the tar, a valid referrer of app, but not in the signed manifest
    bundle = e.write(tmp_path / "b.tar")
    dst = registry_factory()
    report = json.loads(airgap("load", "--key", str(base.pub), str(bundle), "--registry", f"{dst.host}/x",
                               "--insecure-registry", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"),
                               "--json").stdout)
    assert report["attachments"] == []
    app = e.image(0)["digest"]
    assert f"sha256-{app.split(':')[1]}" not in dst.tags("x/app")
    assert dst.manifest_digest("x/app", _digest(m)) is None
    assert not Path(dst.data_dir).joinpath("docker/registry/v2/blobs/sha256", _digest(m).split(":")[1][:2],
                                           _digest(m).split(":")[1]).exists()


def test_a_manifest_from_before_attachments_travelled_still_verifies(base, tmp_path):
    e = Edit(base)
    for image in e.doc["images"]:
        image.pop("attachments", None)
    bundle = e.write(tmp_path / "old.tar")
    doc = json.loads(airgap("verify", str(bundle), "--key", str(base.pub), "--json").stdout)
    assert [i["attachments"] for i in doc["images"]] == [0, 0]
