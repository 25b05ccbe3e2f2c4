"""Output files of a load (airgap/outputs.py): a file that already holds exactly the bytes and mode to
write is left alone (same inode and mtime: config management sees no change); any difference, in the
content or the mode, rewrites it atomically; a link planted in its place is still refused."""

from __future__ import annotations

import os

import pytest

from airgap.errors import OutputError
from airgap.outputs import OutputPlan


def _write(directory, rel, data, mode=0o644):
    plan = OutputPlan()
    plan.add(directory, rel, len(data), "--values-out")
    plan.check()
    return plan.write(directory, rel, data, mode)


def _id(path):
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_identical_file_is_left_alone(tmp_path):
    path = _write(tmp_path, "sub/values.yaml", b"image: {}\n")
    before = _id(path)
    assert _write(tmp_path, "sub/values.yaml", b"image: {}\n") == path
    assert _id(path) == before


@pytest.mark.parametrize("change", ["content", "longer", "mode"])
def test_any_difference_rewrites(tmp_path, change):
    path = _write(tmp_path, "values.yaml", b"image: {}\n")
    before = _id(path)
    data, mode = b"image: {}\n", 0o644
    if change == "content":
        data = b"image: []\n"
    elif change == "longer":
        data += b"# more\n"
    else:
        os.chmod(path, 0o600)
    _write(tmp_path, "values.yaml", data, mode)
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == mode
    assert _id(path) != before  # a new file renamed into place


def test_a_link_in_its_place_is_refused_even_to_identical_content(tmp_path):
    real = tmp_path / "real.json"
    real.write_bytes(b"{}")
    os.chmod(real, 0o644)
    (tmp_path / "policy.json").symlink_to(real)
    with pytest.raises(OutputError, match="symbolic link"):
        _write(tmp_path, "policy.json", b"{}")
