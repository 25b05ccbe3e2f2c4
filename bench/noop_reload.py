"""Benchmark: the fixed cost of `airgap load` when there is nothing to do (issue 14: no-op reload <= 0.3 s).

Not a test. Run from the repository root:

    .venv/bin/python bench/noop_reload.py [--images 3] [--runs 5] [--workdir DIR] [--json FILE] [--checkout-only]

It makes a small signed bundle (``--images`` synthetic images, one a two-platform index), starts a
real Distribution registry, loads the bundle once, then times ``--runs`` no-op reloads of the same
bundle into the same registry, verification included (best and median wall time of the whole
process), twice: with airgap installed as a user has it (the headline figure: a wheel built from this
checkout, installed by pip into a virtualenv of its own, bytecode compiled by pip, run as
``VENV/bin/airgap``), and from this checkout (``python -m airgap`` through the editable install, whose
import finder an installed airgap does not have). One more reload goes through a counting proxy
(tests/support/http_proxy.py) to count the requests it makes by method; a no-op reload must make no
POST, PUT, PATCH or DELETE. Last, ``airgap --version`` wall time and the slowest imports of
``python -X importtime -m airgap --version``.

The installed copy's virtualenv is kept in bench/work/noop-venv (its dependencies are installed once,
through pip's ordinary configuration, again only when pyproject.toml's dependencies change); the
airgap wheel is rebuilt and reinstalled on every run, so it always is this checkout's code.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from http_proxy import Proxy  # noqa: E402
from registry_server import start_registry  # noqa: E402
from synth import LayerSpec, add_image  # noqa: E402

KEY_PASSWORD = "noop-bench"
TARGET_S = 0.3
# An installed airgap runs from compiled bytecode (pip compiles it at install). With
# PYTHONDONTWRITEBYTECODE set (as in some CI shells) every start would compile ~150 modules from
# source, a few hundred ms that no user pays: the children keep their bytecode under the workdir
# instead (``--no-bytecode`` measures the uncached start).
_ENV: dict[str, str] = {}
_CPU: list[float] = []
CHECKOUT = [sys.executable, "-m", "airgap"]
#: How the children start airgap: this checkout, or VENV/bin/airgap (see installed_airgap).
_CMD: list[str] = list(CHECKOUT)
VENV = ROOT / "bench" / "work" / "noop-venv"
BUILD_VENV = ROOT / "bench" / "work" / "build-venv"  # the wheel's build backend, pinned as `make dist` pins it
BUILD_LOCK = ROOT / "scripts" / "dist-lock" / "build.txt"


def _airgap(*args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb", COSIGN_PASSWORD=KEY_PASSWORD, AIRGAP_TOOLS="none", **_ENV)
    if "PYTHONPYCACHEPREFIX" in _ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # From the repository root, ``-m airgap`` finds this checkout; the installed script must not see it.
    proc = subprocess.run([*_CMD, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          cwd=ROOT if _CMD == CHECKOUT else tempfile.gettempdir())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of the child: on a shared machine far steadier than wall time.
    _CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if check and proc.returncode != 0:
        raise SystemExit(f"airgap {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return wall, proc


def _pip(*args: str, python: str = sys.executable) -> None:
    subprocess.run([python, "-m", "pip", "-q", "--disable-pip-version-check", *args], check=True)


def _venv(path: Path, stamp_of: bytes, *pip_args: str) -> Path:
    """``path``, a virtualenv made once per ``stamp_of`` (then ``pip install pip_args``); its python."""
    py = path / "bin" / "python"
    stamp = path / f".stamp-{hashlib.sha256(stamp_of + sys.version.encode()).hexdigest()[:16]}"
    if not stamp.exists():
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", *([] if pip_args else ["--without-pip"]), str(path)],
                       check=True)
        if pip_args:
            _pip("install", *pip_args, python=str(py))
        stamp.touch()
    return py


def installed_airgap(work: Path) -> Path:
    """VENV/bin/airgap: this checkout as a user installs it (install.sh): a wheel in a virtualenv made
    without pip (nothing but what airgap needs in site-packages: no editable finder, no setuptools
    hook), bytecode compiled at install as pip does."""
    src = work / "wheel-src"
    shutil.rmtree(src, ignore_errors=True)
    # The working tree as it is (uncommitted edits included), without build/ or egg-info leftovers.
    for path in (ROOT / "airgap").rglob("*.py"):
        dst = src / path.relative_to(ROOT)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, src / name)
    wheels = work / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    build = _venv(BUILD_VENV, BUILD_LOCK.read_bytes(), "--require-hashes", "--no-deps", "-r", str(BUILD_LOCK))
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(src), python=str(build))
    (wheel,) = wheels.glob("*.whl")
    py = VENV / "bin" / "python"
    if not any(VENV.glob(".stamp-*")) or not (VENV / "bin" / "airgap").exists():
        shutil.rmtree(VENV, ignore_errors=True)
    fresh = _venv(VENV, (ROOT / "pyproject.toml").read_bytes())
    if not (VENV / "bin" / "airgap").exists():
        _pip("--python", str(fresh), "install", str(wheel))  # the dependencies too, as pip resolves them
    _pip("--python", str(py), "install", "--no-deps", "--force-reinstall", str(wheel))
    return VENV / "bin" / "airgap"


def make_bundle(work: Path, images: int) -> tuple[Path, Path]:
    """A signed bundle of ``images`` small images (no chart, no tools); returns (bundle, public key)."""
    layout = work / "src"
    base = LayerSpec(size=1 << 20, seed=1)
    lines = ["# Images (no-op reload benchmark)", "", "```yaml airgap", "release: 0.1.0", "images:"]
    for n in range(images):
        ref = f"img{n}"
        platforms = ["linux/amd64", "linux/arm64"] if n == images - 1 else None
        add_image(layout, ref, layers=[base, LayerSpec(size=256 << 10, seed=10 + n)], platforms=platforms)
        lines += [f"  - name: {ref}", f"    source: oci:{layout}:{ref}"]
    (work / "IMAGES.md").write_text("\n".join(lines + ["```", ""]))
    prefix = work / "cosign"
    _airgap("keygen", "--output-key-prefix", str(prefix))
    out = work / "bundle.tar"
    _airgap("bundle", "--images", str(work / "IMAGES.md"), "-o", str(out), "--no-chart", "--no-tools",
            "--store", str(work / "store"), "--key", f"{prefix}.key")
    return out, Path(f"{prefix}.pub")


def load_argv(work: Path, bundle: Path, key: Path, host: str) -> list[str]:
    return ["load", str(bundle), "--registry", f"{host}/noop", "--insecure-registry", "--key", str(key),
            "--values-out", str(work / "values-airgap.yaml"), "--json"]


def count_requests(work: Path, bundle: Path, key: Path, upstream: str) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def after(req, resp) -> None:
        with lock:
            counts[req.method] += 1

    proxy = Proxy(upstream, after=after)
    try:
        _airgap(*load_argv(work, bundle, key, proxy.host))
    finally:
        proxy.stop()
    return dict(counts)


def slowest_imports(limit: int = 8) -> tuple[float, list[tuple[float, str]]]:
    """(total import seconds, the ``limit`` top-level imports that cost most, cumulative) of this checkout."""
    env = dict(os.environ, NO_COLOR="1", **_ENV)
    if "PYTHONPYCACHEPREFIX" in _ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "airgap", "--version"], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    tops: list[tuple[float, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (p.strip() for p in line[len("import time:"):].split("|", 2))
        if not cumulative.isdigit():
            continue
        raw = line.split("|", 2)[2]
        depth = (len(raw) - len(raw.lstrip(" ")) - 1) // 2  # one space, then two more per level
        if depth == 0:
            tops.append((int(cumulative) / 1e6, name))
    total = sum(s for s, _ in tops)
    return total, sorted(tops, reverse=True)[:limit]


#: What any airgap start pays before its own code runs: the interpreter and the libraries a load
#: imports (httpx's command-line client kept out, as airgap/__init__.py does).
LIBRARIES = ("import sys; sys.modules.setdefault('httpx._main', None); import click, httpx, yaml, json, "
             "tarfile, http.client; from cryptography.hazmat.primitives.asymmetric import ec")


def library_floor(python: str, runs: int = 7) -> float:
    """Best wall time of ``python -c LIBRARIES``: the floor of a reload under these libraries."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", LIBRARIES], check=True, cwd=tempfile.gettempdir(),
                       env=dict(os.environ, **_ENV))
        best = min(best, time.perf_counter() - t0)
    return best


def _use(cmd: list[str], pycache: Path | None) -> None:
    """Start the children as ``cmd``; ``pycache``: where a checkout's children keep their bytecode (an
    installed airgap reads the bytecode pip compiled next to its modules, which a prefix would hide)."""
    _CMD[:] = cmd
    _ENV.pop("PYTHONPYCACHEPREFIX", None)
    if pycache is not None:
        _ENV["PYTHONPYCACHEPREFIX"] = str(pycache)


def _summary(walls: list[float], cpus: list[float], version: float) -> dict:
    return {"reload_best_s": round(min(walls), 3), "reload_median_s": round(statistics.median(walls), 3),
            "reload_cpu_best_s": round(min(cpus), 3), "reload_cpu_median_s": round(statistics.median(cpus), 3),
            "version_s": round(version, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", dest="json_out", type=Path, help="Also write the results here.")
    ap.add_argument("--no-bytecode", action="store_true", help="Checkout children compile every module at start.")
    ap.add_argument("--checkout-only", action="store_true",
                    help="Time this checkout only (no wheel built or installed).")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="airgap-noop-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        pycache = None if args.no_bytecode else work / "pycache"
        modes = {"checkout": list(CHECKOUT)}
        if not args.checkout_only:
            print("installing this checkout's wheel into bench/work/noop-venv ...", flush=True)
            modes = {"installed": [str(installed_airgap(work))], **modes}
        _use(CHECKOUT, pycache)
        print(f"making a signed bundle of {args.images} images ...", flush=True)
        bundle, key = make_bundle(work, args.images)
        reg = start_registry(work / "registry")
        walls: dict[str, list[float]] = {m: [] for m in modes}
        cpus: dict[str, list[float]] = {m: [] for m in modes}
        try:
            host = reg.registry.host
            first, _ = _airgap(*load_argv(work, bundle, key, host))
            for _ in range(args.runs):
                for mode, cmd in modes.items():  # in turns: a busy spell of the machine hits both alike
                    _use(cmd, pycache if mode == "checkout" else None)
                    wall, proc = _airgap(*load_argv(work, bundle, key, host))
                    cpus[mode].append(_CPU[-1])
                    report = json.loads(proc.stdout)
                    if report["blobs_uploaded"] or report["manifests_pushed"]:
                        raise SystemExit(f"the reload was not a no-op: {report}")
                    walls[mode].append(wall)
            head = next(iter(modes))
            _use(modes[head], pycache if head == "checkout" else None)
            counts = count_requests(work, bundle, key, f"http://{host}")
        finally:
            reg.stop()
        versions = {}
        for mode, cmd in modes.items():
            _use(cmd, pycache if mode == "checkout" else None)
            versions[mode] = min(_airgap("--version")[0] for _ in range(3))
        _use(CHECKOUT, pycache)
        imports, top = slowest_imports()
        _use(modes[head], pycache if head == "checkout" else None)
        floor = library_floor(str(VENV / "bin" / "python") if head == "installed" else sys.executable)

    writes = sum(counts.get(m, 0) for m in ("POST", "PUT", "PATCH", "DELETE"))
    summaries = {m: _summary(walls[m], cpus[m], versions[m]) for m in modes}
    # The headline keys are the installed airgap's (what a user runs), the checkout's are under "checkout".
    result = {"images": args.images, "bytecode_cached": not args.no_bytecode, "first_load_s": round(first, 3),
              "measured": head, **summaries[head], "target_s": TARGET_S, "load_average": os.getloadavg()[0],
              "requests": counts, "requests_total": sum(counts.values()), "writes": writes,
              "libraries_floor_s": round(floor, 3),
              "version_imports_s": round(imports, 3), "slowest_imports": [[round(s, 3), n] for s, n in top]}
    if head != "checkout":
        result["checkout"] = summaries["checkout"]
    print(f"first load            {first:6.3f} s")
    labels = {"installed": "installed wheel", "checkout": "editable checkout"}
    for mode in modes:
        w, c = walls[mode], cpus[mode]
        verdict = f"target <= {TARGET_S} s: {'ok' if min(w) <= TARGET_S else 'MISSED'}" if mode == head else ""
        print(f"no-op reload, {labels[mode]:<17}  best {min(w):6.3f} s  median {statistics.median(w):.3f} s   "
              f"CPU best {min(c):.3f} s  median {statistics.median(c):.3f} s   {verdict}")
    print(f"    (CPU: user + system of the process; load average {os.getloadavg()[0]:.1f})")
    print(f"    floor: python and the libraries a load imports (click, httpx, PyYAML, cryptography) "
          f"{floor:.3f} s; airgap's own modules, requests and checks: {min(walls[head]) - floor:.3f} s")
    print(f"requests per reload   {sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
          f"writes {writes}")
    for mode in modes:
        print(f"airgap --version, {labels[mode]:<17} {versions[mode]:6.3f} s")
    print(f"imports of --version (checkout) {imports:.3f} s, slowest:")
    for s, n in top:
        print(f"    {s:6.3f} s  {n}")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if writes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
