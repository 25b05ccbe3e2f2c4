"""airgap reaches the isolated host inside its bundle (tools/), and installs there with no network.

The wheelhouse is built by scripts/dist.py (what `make dist` runs) for this machine's architecture,
downloads cached in .cache/dist so only a first run reaches the package index. The README's "Install
on the isolated host" block then runs literally under `unshare -n` (no network interface at all),
once per CPython 3.9-3.13 this machine has and with the distribution's python3: openssl checks the
manifest signature, sha256sum the installer, install.sh installs, `airgap verify` verifies. The
aarch64 half cannot run here, so each CPython's pip resolves it for an aarch64 target instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from airgap import __version__
from helpers import REPO, airgap, demo_images_md, demo_layout

sys.path.insert(0, str(REPO / "scripts"))
import dist  # noqa: E402  (scripts/dist.py, the make dist builder)

PASSWORD = "offline-install"
BUNDLE_NAME = "haystack-rag-0.1.0.tar"  # the name the README block uses


@pytest.fixture(scope="session")
def no_network() -> list[str]:
    proc = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"unshare -n does not work here (needs root or user namespaces): {proc.stderr.strip()}")
    return ["unshare", "-n"]


# Fixed once per session (it is the last commit's time): a commit made while the tests run must not
# make the two builds of test_dist_is_byte_reproducible differ.
EPOCH = str(dist.source_date_epoch())


def build_wheelhouse(out: Path) -> Path:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "dist.py"), "build", "--host-only", "--out", str(out),
                           "--cache", str(REPO / ".cache" / "dist")], capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out / f"airgap-oci-{__version__}"


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    return build_wheelhouse(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def signed_bundle(tmp_path_factory, wheelhouse) -> tuple[Path, Path]:
    """(bundle with tools/, cosign.pub)."""
    tmp = tmp_path_factory.mktemp("offline-bundle")
    layout = tmp / "src"
    demo_layout(layout)
    env = {"COSIGN_PASSWORD": PASSWORD}
    airgap("keygen", "--output-key-prefix", str(tmp / "cosign"), env=env)
    out = tmp / BUNDLE_NAME
    airgap("bundle", "--images", str(demo_images_md(tmp, layout)), "-o", str(out), "--no-chart", "--store",
           str(tmp / "store"), "--key", str(tmp / "cosign.key"), "--tools", str(wheelhouse), env=env)
    return out, tmp / "cosign.pub"


def readme_block() -> str:
    """The one fenced shell block under the README heading "Install on the isolated host"."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Install on the isolated host\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S)
    assert len(blocks) == 1, f"the section must hold exactly one shell block, has {len(blocks)}"
    return blocks[0]


def run_block(workdir: Path, bundle: Path, pub: Path, python: str, prefix: list[str]) -> subprocess.CompletedProcess:
    """The README block as written, in a directory holding the bundle and cosign.pub; only the venv's
    place and the interpreter are substituted."""
    workdir.mkdir()
    try:
        os.link(bundle, workdir / BUNDLE_NAME)
    except OSError:
        shutil.copyfile(bundle, workdir / BUNDLE_NAME)
    shutil.copyfile(pub, workdir / "cosign.pub")
    block = readme_block()
    assert "sh tools/install.sh ~/airgap-venv" in block and "~/airgap-venv/bin/airgap verify" in block
    script = block.replace("~/airgap-venv", str(workdir / "venv")).replace(
        "sh tools/install.sh", f"sh tools/install.sh --python {python}")
    return subprocess.run([*prefix, "bash", "-eo", "pipefail", "-c", script], cwd=workdir, capture_output=True,
                          text=True, timeout=600)


def manifest_of(bundle: Path) -> dict:
    with tarfile.open(bundle) as tar:
        return json.loads(tar.extractfile("airgap-bundle.json").read())


def system_python() -> tuple[str, str] | None:
    """(version, path) of the distribution's /usr/bin/python3 (Debian's: no ensurepip without python3-venv)."""
    if not os.access("/usr/bin/python3", os.X_OK):
        return None
    out = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True).stdout.strip()
    return (out, "/usr/bin/python3") if out in dist.PYTHONS else None


# The README block runs, venv and all, on the oldest and newest CPython and on the distribution's own
# python3 (Debian bookworm's 3.11): that proves the block, the installer and airgap's 3.9 floor. The
# versions in between differ only in which wheels they pick, which their own pip resolving the
# install offline proves (test_host_half_resolves_for_the_versions_in_between) at a fraction of the time.
README_RUNS = [dist.PYTHONS[0], dist.PYTHONS[-1], "system"]


@pytest.mark.parametrize("py", README_RUNS)
def test_readme_block_installs_and_verifies_with_no_network(py, tmp_path, signed_bundle, no_network):
    if py == "system":
        found = system_python()
        if found is None:
            pytest.skip("no /usr/bin/python3 of a version the wheelhouse has")
        py, python = found
    else:
        python = dist.find_python(py)
        if python is None:
            pytest.skip(f"no CPython {py} on this machine (its wheels are built, not run)")
    bundle, pub = signed_bundle
    proc = run_block(tmp_path / "host", bundle, pub, python, no_network)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "Verified OK" in proc.stdout
    assert f"{BUNDLE_NAME}: OK. Release 0.1.0" in proc.stdout
    venv = tmp_path / "host" / "venv"
    where = subprocess.run([*no_network, str(venv / "bin" / "python"), "-c",
                            "import sys, airgap; print('%d.%d' % sys.version_info[:2], airgap.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert where[0] == py
    assert where[1].startswith(str(venv)), "the installed airgap, not the checkout"
    version = subprocess.run([*no_network, str(venv / "bin" / "airgap"), "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert version == manifest_of(bundle)["tool"] == f"airgap {__version__}"


def rewrite(bundle: Path, out: Path, change) -> None:
    """A copy of the bundle with members changed by ``change(name, data) -> data``."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for info in src:
            data = src.extractfile(info).read()
            data = change(info.name, data)
            info.size = len(data)
            dst.addfile(info, __import__("io").BytesIO(data))


EVIL = b"touch \"$(dirname \"$0\")/../pwned\"\n"


def test_changed_installer_never_runs(tmp_path, signed_bundle, no_network):
    """install.sh swapped in transit: the sha256 line stops the block before it runs, and
    `airgap verify` (already installed from a good bundle) names it too."""
    bundle, pub = signed_bundle
    evil = tmp_path / "evil.tar"
    rewrite(bundle, evil, lambda name, data: EVIL + data if name == "tools/install.sh" else data)
    proc = run_block(tmp_path / "host", evil, pub, sys.executable, no_network)
    assert proc.returncode != 0
    assert "Verified OK" in proc.stdout  # the manifest is genuine ...
    assert "tools/install.sh: FAILED" in proc.stdout  # ... the installer is not what it pins
    assert not (tmp_path / "host" / "pwned").exists() and not (tmp_path / "host" / "venv").exists()
    check = airgap("verify", str(evil), "--key", str(pub), check=False)
    assert check.returncode == 3 and "tools/install.sh" in check.stderr


def test_changed_manifest_fails_the_openssl_check(tmp_path, signed_bundle, no_network):
    """install.sh swapped and its sha256 in the manifest updated to match: the signature check fails."""
    import hashlib

    bundle, pub = signed_bundle
    good = manifest_of(bundle)
    entry = next(f for f in good["files"] if f["path"] == "tools/install.sh")
    with tarfile.open(bundle) as tar:
        evil_sh = EVIL + tar.extractfile("tools/install.sh").read()

    def change(name: str, data: bytes) -> bytes:
        if name == "tools/install.sh":
            return evil_sh
        if name == "airgap-bundle.json":
            return data.replace(entry["sha256"].encode(), hashlib.sha256(evil_sh).hexdigest().encode())
        return data

    evil = tmp_path / "evil.tar"
    rewrite(bundle, evil, change)
    proc = run_block(tmp_path / "host", evil, pub, sys.executable, no_network)
    assert proc.returncode != 0
    assert "Verification failure" in proc.stdout + proc.stderr
    assert not (tmp_path / "host" / "pwned").exists() and not (tmp_path / "host" / "venv").exists()


def test_tools_listed_pinned_and_left_out_on_request(tmp_path, signed_bundle, wheelhouse):
    bundle, _ = signed_bundle
    m = manifest_of(bundle)
    tools = {f["path"]: f for f in m["files"] if f["kind"] == "tool"}
    on_disk = sorted(p.relative_to(wheelhouse).as_posix() for p in wheelhouse.rglob("*") if p.is_file())
    assert sorted(tools) == [f"tools/{p}" for p in on_disk]
    assert f"tools/wheels/airgap_oci-{__version__}-py3-none-any.whl" in tools
    with tarfile.open(bundle) as tar:
        import hashlib
        for path, f in tools.items():
            assert hashlib.sha256(tar.extractfile(path).read()).hexdigest() == f["sha256"]

    shown = airgap("inspect", str(bundle)).stdout
    assert f"tools/ ({len(tools)} files: airgap {__version__} installer)" in shown and ".whl" not in shown

    layout = tmp_path / "src"
    demo_layout(layout)
    bare = tmp_path / "bare.tar"
    proc = airgap("bundle", "--images", str(demo_images_md(tmp_path, layout)), "-o", str(bare), "--no-chart",
                  "--store", str(tmp_path / "store"), "--no-tools", env={"AIRGAP_TOOLS": str(wheelhouse)})
    with tarfile.open(bare) as tar:
        assert not [n for n in tar.getnames() if n.startswith("tools/")]
    assert manifest_of(bare)["tool"] == airgap("--version").stdout.strip() == f"airgap {__version__}"
    assert "note:" not in proc.stderr

    # Without a wheelhouse the bundle is still made, and the user is told what the isolated side lacks.
    proc = airgap("bundle", "--images", str(tmp_path / "IMAGES.md"), "-o", str(tmp_path / "b2.tar"), "--no-chart",
                  "--store", str(tmp_path / "store"), env={"AIRGAP_TOOLS": ""})
    with tarfile.open(tmp_path / "b2.tar") as tar:
        assert not [n for n in tar.getnames() if n.startswith("tools/")]


def test_tools_from_another_airgap_version_are_refused(tmp_path):
    old = tmp_path / "airgap-oci-0.0.1"
    (old / "wheels").mkdir(parents=True)
    (old / "install.sh").write_text("#!/bin/sh\n")
    (old / "wheels" / "airgap_oci-0.0.1-py3-none-any.whl").write_bytes(b"PK")
    layout = tmp_path / "src"
    demo_layout(layout)
    proc = airgap("bundle", "--images", str(demo_images_md(tmp_path, layout)), "-o", str(tmp_path / "b.tar"),
                  "--no-chart", "--store", str(tmp_path / "store"), "--tools", str(old), check=False)
    assert proc.returncode == 2
    assert "airgap_oci-0.0.1-py3-none-any.whl" in proc.stderr and f"airgap {__version__}" in proc.stderr
    assert not (tmp_path / "b.tar").exists()


def test_wheel_ships_the_package_and_no_test_support(wheelhouse):
    """Only airgap/ and its metadata: the synthetic images of the tests, bench and demo
    (tests/support/synth.py), the fixtures and the stand-ins stay out of what users install."""
    import zipfile

    with zipfile.ZipFile(wheelhouse / "wheels" / f"airgap_oci-{__version__}-py3-none-any.whl") as whl:
        names = whl.namelist()
    assert "airgap/cli.py" in names and "airgap/copy.py" in names
    stray = [n for n in names if not (n.startswith("airgap/") or n.startswith(f"airgap_oci-{__version__}.dist-info/"))]
    assert stray == []
    assert not [n for n in names if "synth" in n or "test" in n.split("/")[-1]]


def test_dist_is_byte_reproducible(tmp_path, wheelhouse):
    """Two builds of the same commit: the same wheel, the same wheelhouse tar, byte for byte."""
    again = build_wheelhouse(tmp_path)
    name = f"airgap_oci-{__version__}-py3-none-any.whl"
    assert (again / "wheels" / name).read_bytes() == (wheelhouse / "wheels" / name).read_bytes()
    first_tar = wheelhouse.with_name(wheelhouse.name + ".tar")
    assert again.with_name(again.name + ".tar").read_bytes() == first_tar.read_bytes()


@pytest.fixture(scope="session")
def aarch64_wheelhouse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist-aarch64")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "dist.py"), "build", "--arch", "aarch64", "--no-tar",
                           "--out", str(out), "--cache", str(REPO / ".cache" / "dist")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out / f"airgap-oci-{__version__}"


@pytest.mark.parametrize("py", dist.PYTHONS)
def test_aarch64_half_is_complete(py, aarch64_wheelhouse, no_network):
    """aarch64 cannot run here: its CPython's own pip resolves the install, with both extras, from
    the wheels alone (no network) for an aarch64 target, and picks exactly the locked versions."""
    assert_resolves(aarch64_wheelhouse, "aarch64", py, no_network)


@pytest.mark.parametrize("py", dist.PYTHONS[1:-1])
def test_host_half_resolves_for_the_versions_in_between(py, wheelhouse, no_network):
    """The CPython versions the README block does not run: the same offline resolution check."""
    assert_resolves(wheelhouse, dist.host_arch(), py, no_network)


def assert_resolves(wheelhouse: Path, arch: str, py: str, no_network: list[str]) -> None:
    python = dist.find_python(py)
    if python is None:
        pytest.skip(f"no CPython {py} to resolve its environment markers")
    lock = wheelhouse / "locks" / f"{dist.tag(py)}.txt"
    proc = subprocess.run([*no_network, python, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                           "--target", "/nonexistent", "--no-index", "--isolated", "--find-links",
                           str(wheelhouse / "wheels"), "--only-binary=:all:", *dist.platform_args(arch),
                           "--python-version", py, "--implementation", "cp", "-c", str(lock),
                           f"airgap-oci[ecr,keyless]=={__version__}"],
                          capture_output=True, text=True, env=dict(os.environ, PIP_CONFIG_FILE="/dev/null"))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    def normalise(name_version: str) -> str:
        return name_version.lower().replace("_", "-")

    would = {normalise(w) for w in proc.stdout.split("Would install ", 1)[1].split()}
    locked = {normalise(pin.replace("==", "-")) for pin in lock.read_text().split() if not pin.startswith("pip==")}
    assert would == locked | {f"airgap-oci-{__version__}"}


def test_ecr_extra_installs_with_no_network(tmp_path, wheelhouse, no_network):
    """install.sh --ecr on the oldest CPython found (3.9 needs urllib3 1.26 for botocore): boto3 and
    the ECR target import in the installed airgap."""
    found = next(((py, p) for py in dist.PYTHONS for p in [dist.find_python(py)] if p), None)
    if found is None:
        pytest.skip("no CPython 3.9-3.13 found")
    py, python = found
    venv = tmp_path / "venv"
    proc = subprocess.run([*no_network, "sh", str(wheelhouse / "install.sh"), "--python", python, "--ecr", str(venv)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"installed airgap {__version__} as {venv}/bin/airgap" in proc.stdout
    check = subprocess.run([*no_network, str(venv / "bin" / "python"), "-c",
                            "import boto3, airgap.targets.kinds.ecr, sys; print('%d.%d' % sys.version_info[:2], boto3.__version__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split()[0] == py

    again = subprocess.run(["sh", str(wheelhouse / "install.sh"), "--python", python, str(venv)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and (venv / "bin" / "airgap").exists()


def test_keyless_extra_installs_and_verifies_with_no_network(tmp_path, wheelhouse, no_network):
    """install.sh --keyless on the newest CPython found (sigstore-python needs 3.10+): the installed
    airgap verifies a public-good keyless bundle (a sigstore-conformance vector) with no network at
    all, and refuses it for another identity: what `load` needs to re-check a keyless upstream."""
    found = next(((py, p) for py in reversed(dist.PYTHONS[1:]) for p in [dist.find_python(py)] if p), None)
    if found is None:
        pytest.skip("no CPython 3.10-3.13 found")
    py, python = found
    venv = tmp_path / "venv"
    proc = subprocess.run([*no_network, "sh", str(wheelhouse / "install.sh"), "--python", python, "--keyless",
                           str(venv)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    data = Path(__file__).resolve().parents[1] / "data" / "sigstore"
    script = f"""
import sys
from pathlib import Path
from airgap.errors import SignatureError
from airgap.sign.keyless import KeylessTrust, verify_bundle
data = Path({str(data)!r})
bundle = (data / "dsse-v3-happy.sigstore.json").read_bytes()
root = data / "public-good.trusted_root.json"
ok = verify_bundle(bundle, KeylessTrust(root, identity_regexp=r"https://github\\.com/sigstore-conformance/.+",
                                        issuer="https://token.actions.githubusercontent.com"))
print(ok.issuer)
try:
    verify_bundle(bundle, KeylessTrust(root, identity="release@example.com",
                                       issuer="https://token.actions.githubusercontent.com"))
except SignatureError as exc:
    print("refused:", exc)
"""
    check = subprocess.run([*no_network, str(venv / "bin" / "python"), "-c", script],
                           capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[0] == "https://token.actions.githubusercontent.com"
    assert lines[1].startswith("refused:") and "release@example.com" in lines[1]


@pytest.mark.parametrize("intruder", ["wheels/requests-2.32.5-1-py3-none-any.whl", "locks/cp399.txt"])
def test_installer_refuses_a_file_it_does_not_list(tmp_path, wheelhouse, intruder):
    """An extra file in tools/ (signed manifests pin only the listed ones) stops install.sh before pip."""
    tools = tmp_path / "tools"
    shutil.copytree(wheelhouse, tools)
    (tools / intruder).write_bytes(b"PK")
    proc = subprocess.run(["sh", str(tools / "install.sh"), "--python", sys.executable, str(tmp_path / "venv")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "does not hold exactly the files SHA256SUMS lists" in proc.stderr
    assert not (tmp_path / "venv").exists()
