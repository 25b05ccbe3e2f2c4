"""Packages a Helm chart directory into the .tgz `helm package` would make, without needing helm.

Deterministic: sorted entries, one fixed mtime (not the bundle's time: a chart repackaged for the next
release must keep its digest), owner 0/0, mode 0644, gzip header without a timestamp, so the same
chart content and version give the same sha256 in every bundle. That matters on the isolated side:
``charts/<name>:<version>`` is an immutable tag there, and the load refuses a changed chart under an
unchanged version.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from airgap import safeyaml
from airgap.errors import InputError


@dataclass(frozen=True)
class PackagedChart:
    name: str
    version: str
    data: bytes

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def _chart_meta(chart_yaml: Path) -> tuple[str, str]:
    try:
        doc = safeyaml.load(chart_yaml.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{chart_yaml.parent}: not a Helm chart (no Chart.yaml)") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{chart_yaml}: invalid YAML ({safeyaml.describe(exc)})") from None
    if not isinstance(doc, dict) or not doc.get("name") or not doc.get("version"):
        raise InputError(f"{chart_yaml}: needs name: and version:")
    return _checked(str(doc["name"]), str(doc["version"]), chart_yaml)


_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")       # Helm's chart name rule
_VERSION_RE = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$")  # SemVer 2, as Helm requires


def _checked(name: str, version: str, where: Path) -> tuple[str, str]:
    if not _NAME_RE.match(name):
        raise InputError(f"{where}: chart name {name!r} is not a valid Helm chart name")
    if not _VERSION_RE.match(version):
        raise InputError(f"{where}: chart version {version!r} is not SemVer")
    return name, version


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or any(fnmatch.fnmatch(p, pat) for p in parts):
            return True
    return False


#: 1980-01-01T00:00:00Z, the reproducible-builds convention (zip cannot go lower; tools treat 0 as unset).
FIXED_MTIME = 315532800


def package_chart(path: Path, mtime: int = FIXED_MTIME) -> PackagedChart:
    path = Path(path)
    if path.is_file() and path.name.endswith(".tgz"):
        try:
            with tarfile.open(path, "r:gz") as tf:
                chart_yaml = next((m for m in tf.getmembers() if m.name.count("/") == 1
                                   and m.name.endswith("/Chart.yaml")), None)
                if chart_yaml is None:
                    raise InputError(f"{path}: not a packaged Helm chart (no <name>/Chart.yaml inside)")
                fh = tf.extractfile(chart_yaml)
                assert fh is not None
                doc = safeyaml.load(fh.read())
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: its Chart.yaml is invalid YAML ({safeyaml.describe(exc)})") from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InputError(f"{path}: not a readable packaged Helm chart ({exc})") from None
        if not isinstance(doc, dict) or not doc.get("name") or not doc.get("version"):
            raise InputError(f"{path}: its Chart.yaml needs name: and version:")
        name, version = _checked(str(doc["name"]), str(doc["version"]), path)
        return PackagedChart(name, version, path.read_bytes())
    if not path.is_dir():
        raise InputError(f"chart {path} not found (give a chart directory or a packaged .tgz)")
    name, version = _chart_meta(path / "Chart.yaml")
    patterns = [".git", ".helmignore", "*.tgz.partial"]
    ignore_file = path / ".helmignore"
    if ignore_file.is_file():
        patterns += [line.strip() for line in ignore_file.read_text().splitlines()
                     if line.strip() and not line.startswith("#")]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path).as_posix()
            if _ignored(rel, patterns):
                continue
            info = tarfile.TarInfo(f"{name}/{rel}")
            data = file.read_bytes()
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    return PackagedChart(name, version, buf.getvalue())
