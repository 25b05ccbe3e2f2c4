"""Every output of `airgap load` is checked before the first push, and the command-line conventions.

A bad output (a directory where the values file goes, a planted symbolic link, a read-only mount, a
full disk) fails with one line naming the path, before anything reaches the registry: the registry is
checked to hold no tag afterwards. Read-only mounts and full disks are real ones, made in a private
mount namespace (``unshare -m``: a read-only bind mount, a 256 KiB tmpfs).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO, airgap, demo_bundle, load_args, run_load

UNSHARE = shutil.which("unshare")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return demo_bundle(tmp_path_factory.mktemp("outputs"))


def _load(bundle, registry, *args, check=False, **kw):
    return run_load(bundle, registry, "out", *args, check=check, **kw)


def _refused(proc, *words) -> str:
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in last, last
    return last


def test_values_out_naming_a_directory_is_refused_before_any_push(bundle, registry, tmp_path):
    (tmp_path / "v.yaml").mkdir()
    proc = _load(bundle, registry, "--values-out", str(tmp_path / "v.yaml"))
    _refused(proc, "--values-out", str(tmp_path / "v.yaml"), "is a directory")
    assert registry.catalog() == []


def test_values_out_through_a_symlink_is_refused_and_nothing_lands_next_to_its_target(bundle, registry, tmp_path):
    elsewhere = tmp_path / "etc-containers"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "values.yaml").symlink_to(elsewhere / "values.yaml")
    proc = _load(bundle, registry, "--values-out", str(tmp_path / "out" / "values.yaml"))
    _refused(proc, "symbolic link", "values.yaml")
    assert registry.catalog() == [] and list(elsewhere.iterdir()) == []


def test_planted_link_in_the_out_dir_is_refused(bundle, registry, tmp_path):
    out = tmp_path / "nodes"
    (out / "containerd").mkdir(parents=True)
    (tmp_path / "real-etc").mkdir()
    (out / "containerd" / "certs.d").symlink_to(tmp_path / "real-etc")
    proc = _load(bundle, registry, "--values-out", str(tmp_path / "v.yaml"), "--emit", "containerd",
                 "--out-dir", str(out))
    _refused(proc, "symbolic link", "certs.d")
    assert registry.catalog() == [] and not (tmp_path / "v.yaml").exists()
    assert list((tmp_path / "real-etc").iterdir()) == []


def test_out_dir_that_is_a_file_is_refused(bundle, registry, tmp_path):
    (tmp_path / "file").write_text("x")
    proc = _load(bundle, registry, "--values-out", str(tmp_path / "v.yaml"), "--crds-out", str(tmp_path / "file"))
    _refused(proc, "--crds-out", "is a file")
    assert registry.catalog() == []


def _in_mount_namespace(script: str) -> subprocess.CompletedProcess:
    if UNSHARE is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to make a real read-only mount or a full file system")
    probe = subprocess.run([UNSHARE, "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not permitted here: {probe.stderr.decode().strip()}")
    return subprocess.run([UNSHARE, "-m", "--propagation", "private", "sh", "-ec", script], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def _airgap_cmd(bundle, registry, *args: str) -> str:
    import shlex
    cmd = [sys.executable, "-m", "airgap", *load_args(bundle, registry, "out", *args)]
    return " ".join(shlex.quote(c) for c in cmd)


def test_read_only_output_directory_is_refused_before_any_push(bundle, registry, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = _in_mount_namespace(f"mount --bind {ro} {ro}; mount -o remount,bind,ro {ro}; "
                               f"{_airgap_cmd(bundle, registry, '--values-out', str(ro / 'v.yaml'))} || echo rc=$?")
    assert "rc=2" in proc.stdout, proc.stderr
    assert str(ro) in proc.stderr and "Read-only file system" in proc.stderr
    assert registry.catalog() == []


def test_full_disk_is_refused_before_any_push(bundle, registry, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    proc = _in_mount_namespace(
        f"mount -t tmpfs -o size=256k tmpfs {full}; dd if=/dev/zero of={full}/filler bs=4k 2>/dev/null || true; "
        f"{_airgap_cmd(bundle, registry, '--values-out', str(full / 'v.yaml'))} || echo rc=$?")
    assert "rc=2" in proc.stdout, proc.stderr
    assert str(full) in proc.stderr.strip().splitlines()[-1]
    assert "free space" in proc.stderr or "No space left" in proc.stderr
    assert registry.catalog() == []


def test_quiet_prints_nothing_and_json_errors_are_json(bundle, registry, tmp_path):
    proc = airgap("-q", "load", "--insecure-skip-verify", str(bundle), "--registry", f"{registry.host}/q",
                  "--insecure-registry", "--values-out", str(tmp_path / "v.yaml"))
    assert proc.stdout == "" and proc.stderr == ""
    assert (tmp_path / "v.yaml").is_file()
    (tmp_path / "dir").mkdir()
    proc = run_load(bundle, registry, "q", "--values-out", str(tmp_path / "dir"), "--json", check=False)
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == proc.returncode == 2 and "is a directory" in doc["error"]
    proc = airgap("inspect", str(tmp_path / "missing.tar"), "--json", check=False)
    assert json.loads(proc.stdout)["exit_code"] == proc.returncode != 0


def test_inspect_into_a_closed_pipe_is_not_an_error(bundle):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` that has already exited
    proc = subprocess.run([sys.executable, "-m", "airgap", "inspect", str(bundle)], stdout=write_end,
                          stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr.lower()


def test_a_finished_byte_bar_stays_at_its_total():
    from rich.console import Console
    from airgap.progress import RichProgress

    p = RichProgress(Console(file=io.StringIO(), force_terminal=True, width=120))
    try:
        p.phase("copying", 3_200_000)
        p.advance(3_200_000)
        p.images(6)
        p.phase("packing", 1000)
        copying = p.bars.tasks[0]
        assert copying.completed == copying.total == 3_200_000
    finally:
        p.close()


def test_values_keys_are_checked_before_anything_else():
    from airgap.bundle.format import BundleImage, BundleManifest
    from airgap.emit.values import values_document
    from airgap.errors import InputError
    from airgap.registry.client import Target

    def manifest(values):
        return BundleManifest("0.1.0", "2026-01-01T00:00:00Z", [BundleImage(
            name="q", source="oci:x:q", tag="1", digest="sha256:" + "1" * 64, media_type="", size=0,
            values=values)], [], 0, 0)
    target = Target("reg:5000", "p")
    assert values_document(manifest("query.image"), target)["query"]["image"]["repository"] == "p/q"
    for bad in ("a..b", "../x", "a.b c", ".".join(["k"] * 9), "image"):
        with pytest.raises(InputError, match="values key"):
            values_document(manifest(bad), target)
