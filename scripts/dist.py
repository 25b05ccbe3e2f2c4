#!/usr/bin/env python3
"""`make dist`: the offline wheelhouse that carries airgap to the isolated host.

    dist/airgap-oci-VERSION/          install.sh, SHA256SUMS, locks/cpXY.txt, wheels/*.whl
    dist/airgap-oci-VERSION.tar       the same tree as one reproducible tar (the release artifact)

The wheels are the airgap-oci wheel (built here from the git-tracked files) and every dependency,
including the `ecr` and `keyless` extras, as manylinux wheels for CPython 3.9-3.13 on x86_64 and aarch64, glibc 2.28
and newer (RHEL 8's glibc; RHEL 9, Ubuntu 22.04 and 24.04 have newer ones). Dependencies are pinned,
name, version and sha256 of every file, by scripts/dist-lock/cpXY.txt; `python3 scripts/dist.py lock`
rewrites those from pyproject.toml (it needs each CPython to resolve its own environment markers).

With SOURCE_DATE_EPOCH (default: the last commit's time) two builds of the same commit give the same
bytes: the airgap wheel (setuptools pinned in scripts/dist-lock/build.txt, files copied with fixed
modes), the downloaded wheels (pinned by hash), and the tar (sorted, fixed owner, modes and mtime).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK_DIR = REPO / "scripts" / "dist-lock"
INSTALLER = REPO / "scripts" / "dist-install.sh"
DIST_NAME = "airgap-oci"
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
ARCHES = ["x86_64", "aarch64"]
GLIBC = "2_28"  # RHEL 8; pip also takes every older manylinux tag (manylinux2014 = 2_17)


def version() -> str:
    text = (REPO / "airgap" / "__init__.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not m:
        raise SystemExit("dist: no __version__ in airgap/__init__.py")
    return m.group(1)


def pip_env() -> dict[str, str]:
    """The user's index settings stay (a corporate mirror is fine: every file is pinned by hash), but
    no stray find-links directory or constraint may add or swap a file."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_NO_INDEX")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, env=kw.pop("env", pip_env()), **kw)
    if proc.returncode != 0:
        raise SystemExit(f"dist: {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tag(py: str) -> str:
    return "cp" + py.replace(".", "")


def platform_args(arch: str) -> list[str]:
    """--platform for every manylinux tag glibc 2.28 runs: pip does not widen an explicit --platform."""
    top = int(GLIBC.split("_")[1])
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(top, 16, -1)] + [f"manylinux2014_{arch}"]
    return [a for t in tags for a in ("--platform", t)]


def host_arch() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())


# --- the lock ----------------------------------------------------------------------------------------

def find_python(py: str) -> str | None:
    for cand in sorted(Path("/root/.pyenv/versions").glob(f"{py}.*/bin/python{py}")) + \
            [Path(p) / f"python{py}" for p in os.environ.get("PATH", "").split(os.pathsep)]:
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def requirements() -> list[str]:
    import tomllib  # the lock is rewritten on a maintainer's 3.11+; `build` runs on 3.9 too

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # pip too: install.sh first upgrades the venv's pip from it, so an old distro pip (RHEL 8's
    # python39 has pip 20.2, which predates manylinux_2_28 tags) still installs every wheel.
    extras = project["optional-dependencies"]
    # Both extras travel: an isolated host cannot fetch boto3 or sigstore-python later (keyless
    # carries a python_version >= '3.10' marker, so the 3.9 lock holds none of it).
    return list(project["dependencies"]) + list(extras["ecr"]) + list(extras["keyless"]) + ["pip"]


def lock() -> None:
    reqs = requirements()
    LOCK_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for py in PYTHONS:
            interp = find_python(py)
            if interp is None:
                raise SystemExit(f"dist lock: no python{py} found: each CPython resolves its own markers")
            pins: dict[str, tuple[str, set[str]]] = {}
            for arch in ARCHES:
                d = Path(tmp) / f"{py}-{arch}"
                # The target's own interpreter: pip evaluates environment markers against the running one.
                run(interp, "-m", "pip", "download", "-q", "--only-binary=:all:", *platform_args(arch),
                    "--python-version", py, "--implementation", "cp", "-d", str(d), *reqs)
                for whl in d.glob("*.whl"):
                    name, ver = whl.name.split("-")[:2]
                    key = name.lower().replace("_", "-")
                    old = pins.setdefault(key, (ver, set()))
                    if old[0] != ver:
                        raise SystemExit(f"dist lock: {key} resolves to {old[0]} and {ver} for {py}")
                    old[1].add(sha256(whl))
            lines = [f"# airgap-oci's dependencies for CPython {py}, x86_64 and aarch64 manylinux_{GLIBC}: "
                     "written by `python3 scripts/dist.py lock`", ""]
            for key in sorted(pins):
                ver, hashes = pins[key]
                lines.append(f"{key}=={ver} " + " ".join(f"--hash=sha256:{h}" for h in sorted(hashes)))
            (LOCK_DIR / f"{tag(py)}.txt").write_text("\n".join(lines) + "\n")
            print(f"locked {tag(py)}: {len(pins)} packages")


# --- the build ---------------------------------------------------------------------------------------

def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    proc = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else 315532800  # 1980


def tracked_files() -> list[str]:
    proc = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("dist: needs a git checkout (the wheel is built from the tracked files only)")
    return sorted(p for p in proc.stdout.split("\0") if p and (REPO / p).is_file())


def build_wheel(out: Path, cache: Path, epoch: int) -> Path:
    """The airgap-oci wheel from a clean copy of the tracked files (no stale build/ or egg-info)."""
    venv = cache / f"build-venv-{sys.version_info[0]}.{sys.version_info[1]}"
    stamp = venv / ("lock-" + sha256(LOCK_DIR / "build.txt")[:16])
    if not stamp.exists():
        shutil.rmtree(venv, ignore_errors=True)
        run(sys.executable, "-m", "venv", str(venv))
        run(str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps",
            "-r", str(LOCK_DIR / "build.txt"))
        stamp.touch()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        for rel in tracked_files():
            if rel.startswith(("airgap/", "pyproject.toml", "README.md")):
                dst = src / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(REPO / rel, dst)
                os.chmod(dst, 0o644)  # the checkout's umask must not reach the wheel
        wheels = Path(tmp) / "wheels"
        env = dict(pip_env(), SOURCE_DATE_EPOCH=str(epoch), PYTHONHASHSEED="0")
        run(str(venv / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
            "--no-index", "-w", str(wheels), str(src), env=env, cwd=tmp)
        (built,) = wheels.glob("*.whl")
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built, out / built.name))


def download(out: Path, cache: Path, pythons: list[str], arches: list[str]) -> None:
    for py in pythons:
        lock_file = LOCK_DIR / f"{tag(py)}.txt"
        if not lock_file.is_file():
            raise SystemExit(f"dist: no lock for CPython {py} ({lock_file}); run `python3 scripts/dist.py lock`")
        for arch in arches:
            # A directory per target, kept: a rerun whose files are all there does not run pip.
            d = cache / "wheels" / f"{tag(py)}-{arch}"
            if not cached(d, lock_file):
                run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes",
                    "--only-binary=:all:", *platform_args(arch), "--python-version", py, "--implementation", "cp",
                    "-d", str(d), "-r", str(lock_file))
            wanted = locked_hashes(lock_file)
            for whl in sorted(d.glob("*.whl")):  # only what this lock pins: the cache may hold older files
                if sha256(whl) in wanted and not (out / whl.name).exists():
                    shutil.copyfile(whl, out / whl.name)


def cached(directory: Path, lock_file: Path) -> bool:
    """Whether ``directory`` already holds, for every pin of the lock, a file with one of its hashes:
    then pip, which would ask the index about each package, need not run at all."""
    if not directory.is_dir():
        return False
    have = {sha256(p) for p in directory.glob("*.whl")}
    return all(hashes & have for hashes in lock_pins(lock_file).values())


def lock_pins(lock_file: Path) -> dict[str, set[str]]:
    """``name==version`` -> the sha256s the lock allows for it."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        if line and not line.startswith("#"):
            pin, *hashes = line.split()
            pins[pin] = {h.split(":", 1)[1] for h in hashes}
    return pins


def locked_hashes(lock_file: Path) -> set[str]:
    return set().union(*lock_pins(lock_file).values())


def write_tar(tree: Path, out: Path, epoch: int) -> None:
    """A tar of ``tree`` whose bytes depend only on the files' names and contents."""
    buf = out.with_name(out.name + ".partial")
    with tarfile.open(buf, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            rel = path.relative_to(tree.parent).as_posix()
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mtime = epoch
            info.mode = 0o755 if path.name.endswith(".sh") else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)
    os.replace(buf, out)


def build(args: argparse.Namespace) -> None:
    ver = version()
    epoch = source_date_epoch()
    dist = Path(args.out)
    tree = dist / f"{DIST_NAME}-{ver}"
    shutil.rmtree(tree, ignore_errors=True)
    wheels = tree / "wheels"
    cache = Path(args.cache)
    build_wheel(wheels, cache, epoch)
    download(wheels, cache, args.python or PYTHONS, args.arch or ARCHES)
    # The lock without hashes, as install.sh's pip constraints: the same versions on every host
    # (install.sh's own integrity check is the sha256 of every file in the signed bundle manifest).
    (tree / "locks").mkdir()
    for py in args.python or PYTHONS:
        pins = sorted(lock_pins(LOCK_DIR / f"{tag(py)}.txt"))
        (tree / "locks" / f"{tag(py)}.txt").write_text("\n".join(pins) + "\n")
    script = INSTALLER.read_text().replace("@VERSION@", ver).replace("@DIST@", DIST_NAME)
    (tree / "install.sh").write_text(script)
    os.chmod(tree / "install.sh", 0o755)
    sums = sorted(p for p in tree.rglob("*") if p.is_file())
    (tree / "SHA256SUMS").write_text("".join(f"{sha256(p)}  {p.relative_to(tree).as_posix()}\n" for p in sums))
    if not args.no_tar:
        write_tar(tree, dist / f"{DIST_NAME}-{ver}.tar", epoch)
    n = len(list(wheels.glob("*.whl")))
    size = sum(p.stat().st_size for p in wheels.glob("*.whl"))
    print(f"{tree}: {n} wheels, {size / 1e6:.1f} MB" + ("" if args.no_tar else f"; {tree}.tar"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lock", help="rewrite scripts/dist-lock/cpXY.txt from pyproject.toml")
    b = sub.add_parser("build", help="build the wheelhouse into --out")
    b.add_argument("--out", default=str(REPO / "dist"))
    b.add_argument("--cache", default=str(REPO / ".cache" / "dist"),
                   help="downloaded wheels and the build venv, kept between runs")
    b.add_argument("--python", action="append", choices=PYTHONS, help="only this CPython (repeatable)")
    b.add_argument("--arch", action="append", choices=ARCHES, help="only this architecture (repeatable)")
    b.add_argument("--host-only", action="store_true", help="only this machine's architecture")
    b.add_argument("--no-tar", action="store_true", help="the directory only")
    args = parser.parse_args()
    if args.command == "lock":
        lock()
    else:
        if args.host_only:
            args.arch = [host_arch()]
        build(args)


if __name__ == "__main__":
    main()
