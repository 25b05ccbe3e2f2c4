"""Benchmark: the fixed cost of `airgap load` when there is nothing to do (issue 14: no-op reload <= 0.3 s).

Not a test. Run from the repository root:

    .venv/bin/python bench/noop_reload.py [--images 3] [--runs 5] [--workdir DIR] [--json FILE]

It makes a small signed bundle (``--images`` synthetic images, one a two-platform index), starts a
real Distribution registry, loads the bundle once, then times ``--runs`` no-op reloads of the same
bundle into the same registry, verification included (best and median wall time of the whole
process). One more reload goes through a counting proxy (tests/support/http_proxy.py) to count the
requests it makes by method; a no-op reload must make no POST, PUT, PATCH or DELETE. Last,
``airgap --version`` wall time and the slowest imports of ``python -X importtime -m airgap --version``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
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


def _airgap(*args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb", COSIGN_PASSWORD=KEY_PASSWORD, AIRGAP_TOOLS="none", **_ENV)
    if "PYTHONPYCACHEPREFIX" in _ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "airgap", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of the child: on a shared machine far steadier than wall time.
    _CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if check and proc.returncode != 0:
        raise SystemExit(f"airgap {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return wall, proc


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
    """(total import seconds, the ``limit`` top-level imports that cost most, cumulative)."""
    env = dict(os.environ, NO_COLOR="1", **_ENV)
    if "PYTHONPYCACHEPREFIX" in _ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "airgap", "--version"], capture_output=True,
                          text=True, env=env)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", dest="json_out", type=Path, help="Also write the results here.")
    ap.add_argument("--no-bytecode", action="store_true", help="Children compile every module at start.")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="airgap-noop-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.no_bytecode:
            _ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        print(f"making a signed bundle of {args.images} images ...", flush=True)
        bundle, key = make_bundle(work, args.images)
        reg = start_registry(work / "registry")
        try:
            host = reg.registry.host
            first, _ = _airgap(*load_argv(work, bundle, key, host))
            walls, cpus = [], []
            for _ in range(args.runs):
                wall, proc = _airgap(*load_argv(work, bundle, key, host))
                cpus.append(_CPU[-1])
                report = json.loads(proc.stdout)
                if report["blobs_uploaded"] or report["manifests_pushed"]:
                    raise SystemExit(f"the reload was not a no-op: {report}")
                walls.append(wall)
            counts = count_requests(work, bundle, key, f"http://{host}")
        finally:
            reg.stop()
        version = min(_airgap("--version")[0] for _ in range(3))
        imports, top = slowest_imports()

    writes = sum(counts.get(m, 0) for m in ("POST", "PUT", "PATCH", "DELETE"))
    result = {"images": args.images, "bytecode_cached": not args.no_bytecode, "first_load_s": round(first, 3),
              "reload_best_s": round(min(walls), 3),
              "reload_median_s": round(statistics.median(walls), 3), "reload_cpu_best_s": round(min(cpus), 3),
              "target_s": TARGET_S, "load_average": os.getloadavg()[0],
              "requests": counts, "requests_total": sum(counts.values()), "writes": writes,
              "version_s": round(version, 3), "version_imports_s": round(imports, 3),
              "slowest_imports": [[round(s, 3), n] for s, n in top]}
    print(f"first load            {first:6.3f} s")
    print(f"no-op reload (best)   {min(walls):6.3f} s   median {statistics.median(walls):.3f} s   "
          f"target <= {TARGET_S} s: {'ok' if min(walls) <= TARGET_S else 'MISSED'}")
    print(f"no-op reload CPU      {min(cpus):6.3f} s   (user + system of the process; load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"requests per reload   {sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
          f"writes {writes}")
    print(f"airgap --version      {version:6.3f} s   imports {imports:.3f} s")
    for s, n in top:
        print(f"    {s:6.3f} s  {n}")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if writes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
