"""Benchmark: `airgap load` against `skopeo copy` into real Distribution registries.

Not a test. Run from the repository root:

    .venv/bin/python bench/bench.py [--size-gb 1.2] [--big-layer-gb 2] [--workdir DIR] [--keep]

It generates a synthetic corpus (6 images sharing one base layer, incompressible data) and serves
it from a Distribution registry. Each of ``--runs`` rounds times, against skopeo in the same run:
``airgap bundle`` from that registry (cold local store, signed) vs ``skopeo copy`` of every image
into one OCI layout plus ``tar``; ``airgap load`` (verifying) into an empty registry vs ``skopeo
copy`` from the OCI layout into another; then a no-op reload. 200 small images follow (``airgap
load`` vs one ``skopeo sync`` registry to registry), a delta bundle, and a single 2 GB layer. The
best run of each step counts; peak RSS comes from os.wait4's rusage of the child. Prints a table
of ratios against the issue-14 targets and writes bench/results.json.

Both loads are also made, in the same rounds, by bench/floor.py: the same pushes by a client that
costs almost nothing (sendfile, no verification, no probes) into a fresh registry of the same kind.
Its wall time over skopeo's is the lowest ratio any client could reach on this registry and disk;
airgap's over the floor is what airgap itself adds.

bench.py itself stays small in memory: children write to files, layers are generated in 1 MiB
chunks, and nothing reads a blob or the bundle whole.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from synth import LayerSpec, add_image, make_corpus  # noqa: E402
from registry_server import (  # noqa: E402
    RegistryError,
    RegistryProcess,
    SKOPEO_BIN,
    require_tools,
    start_registry,
)

GB = 10**9
MB = 1 << 20
MiB = 2**20


@dataclass
class Run:
    """One child process: what ran, how long, how much memory, where its output went."""

    name: str
    argv: list[str]
    wall_s: float
    maxrss_kib: int
    returncode: int
    stdout_path: str
    stderr_path: str
    wait4_maxrss_kib: int = 0  # raw ru_maxrss, floored by bench.py's own footprint (see _peak_rss)
    sampled_hwm_kib: int = 0
    #: CPU seconds (user + system) of the child itself, and of the registries that served it: on two
    #: cores the two sums bound the wall time, so they say which side a figure waits on.
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def rss_mb(self) -> float:
        return self.maxrss_kib * 1024 / 1e6

    def stderr_tail(self, limit: int = 4000) -> str:
        return _tail(Path(self.stderr_path), limit)

    def stdout_json(self) -> dict | None:
        path = Path(self.stdout_path)
        # The load summary is small; refuse to slurp something unexpectedly large.
        if not path.is_file() or path.stat().st_size > 16 * MiB:
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None


def _peak_rss(wait4_kib: int, parent_hwm_kib: int, sampled_kib: int) -> int:
    """The child's peak RSS in KiB.

    Linux's ru_maxrss for a child also counts the memory of the process it was forked from: exec
    folds the pre-exec address space's high-water mark (here bench.py's own, shared through vfork)
    into the child's maxrss. So when wait4's figure does not exceed bench.py's own high-water mark,
    it only says "at most that"; the VmHWM sampled from /proc while the child ran (its post-exec
    address space only) is then the real figure. Above that floor, wait4's number is exact.
    """
    if wait4_kib > parent_hwm_kib:
        return wait4_kib
    return sampled_kib or wait4_kib


class _HwmSampler:
    """Polls /proc/PID/status VmHWM (a high-water mark, so sparse polling loses little)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hwm-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self._stop.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                            break
            except (OSError, ValueError):
                pass
            self._stop.wait(self.interval)


def _tail(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process from /proc/PID/stat; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, workdir: Path, airgap_cmd: list[str]) -> None:
        #: Registries running now (main's list): their CPU during a run is billed to that run.
        self.servers: list = []
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.airgap_cmd = airgap_cmd
        self.runs: list[Run] = []
        self.errors: list[str] = []

    def run(self, name: str, argv: list[str]) -> Run:
        """Run argv to completion; wall time and the child's peak RSS (see _peak_rss)."""
        out = self.logs / f"{name}.out"
        err = self.logs / f"{name}.err"
        env = dict(os.environ, NO_COLOR="1", TERM="dumb", COSIGN_PASSWORD=BENCH_KEY_PASSWORD)
        # Every timed step starts with no dirty pages left by the one before (a bundle just written,
        # a registry just filled): otherwise their writeback is billed to whoever runs next.
        os.sync()
        pids = [rp.process.pid for rp in self.servers if rp.process.poll() is None]
        server_cpu0 = {pid: _proc_cpu_s(pid) for pid in pids}
        with open(out, "wb") as fo, open(err, "wb") as fe:
            floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, env=env)
            sampler = _HwmSampler(proc.pid)
            sampler.start()
            try:
                # wait4 instead of proc.wait(): only it returns the child's rusage (ru_maxrss, KiB).
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                sampler.stop()
            wall = time.perf_counter() - t0
        server_cpu = sum(max(0.0, _proc_cpu_s(pid) - c0) for pid, c0 in server_cpu0.items())
        proc.returncode = os.waitstatus_to_exitcode(status)
        run = Run(name, argv, wall, _peak_rss(usage.ru_maxrss, floor, sampler.peak_kib), proc.returncode,
                  str(out), str(err), wait4_maxrss_kib=usage.ru_maxrss, sampled_hwm_kib=sampler.peak_kib,
                  cpu_s=usage.ru_utime + usage.ru_stime, server_cpu_s=server_cpu)
        self.runs.append(run)
        return run

    def airgap(self, name: str, *args: str) -> Run | None:
        """Run an airgap subcommand; on failure record and print its stderr, return None."""
        run = self.run(name, [*self.airgap_cmd, *args])
        if run.ok:
            return run
        msg = (
            f"`{shlex.join(run.argv)}` failed with exit code {run.returncode} after {run.wall_s:.1f}s\n"
            f"--- stderr (tail) ---\n{run.stderr_tail()}\n--- stdout (tail) ---\n{_tail(Path(run.stdout_path), 2000)}"
        )
        print(f"\nERROR: {msg}", file=sys.stderr)
        self.errors.append(msg)
        return None

    def skopeo(self, name: str, *args: str) -> Run:
        run = self.run(name, [SKOPEO_BIN, *args])
        if not run.ok:
            raise RegistryError(f"skopeo failed: {shlex.join(run.argv)}\n{run.stderr_tail()}")
        return run


def write_images_file(path: Path, layout: Path, refs: list[str], release: str = "0.1.0") -> None:
    lines = [
        "# Images (benchmark corpus)",
        "",
        "Generated by bench/bench.py from a synthetic OCI layout.",
        "",
        "```yaml airgap",
        f"release: {release}",
        "images:",
    ]
    for ref in refs:
        lines += [f"  - name: {ref}", f"    source: oci:{layout}:{ref}"]
    lines += ["```", ""]
    path.write_text("\n".join(lines))


def ensure_key(work: Path) -> Path:
    """The real flow is signed: bundle with a key, load verifying it (a throwaway key per run)."""
    prefix = work.parent / "cosign" if work.name != "" else work / "cosign"
    if not prefix.with_suffix(".key").exists():
        subprocess.run([sys.executable, "-m", "airgap", "keygen", "--output-key-prefix", str(prefix)], check=True,
                       env=dict(os.environ, COSIGN_PASSWORD=BENCH_KEY_PASSWORD), capture_output=True)
    return prefix


def bundle_args(work: Path, images_file: Path, out: Path) -> list[str]:
    # Images only (the chart is not what is measured), and a content store inside the workdir so a
    # run neither reuses nor pollutes ~/.cache/airgap.
    return ["bundle", "--images", str(images_file), "-o", str(out), "--no-chart", "--store", str(work / "store"),
            "--key", f"{ensure_key(work)}.key"]


def load_args(work: Path, bundle: Path, registry: str) -> list[str]:
    # --values-out: the default writes values-airgap.yaml into the current directory.
    return ["load", str(bundle), "--registry", registry, "--insecure-registry", "--json",
            "--key", f"{ensure_key(work)}.pub", "--values-out", str(work / "values-airgap.yaml")]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def layout_blobs(layout: Path) -> set[str]:
    return {"sha256:" + p.name for p in (layout / "blobs" / "sha256").iterdir() if not p.name.startswith(".")}


def layout_ref_digests(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
        if "org.opencontainers.image.ref.name" in (m.get("annotations") or {})
    }


def tool_version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError as exc:
        return f"unavailable: {exc}"


@dataclass
class Results:
    machine: dict = field(default_factory=dict)
    corpus: dict = field(default_factory=dict)
    bundle: dict = field(default_factory=dict)
    load: dict = field(default_factory=dict)
    skopeo: dict = field(default_factory=dict)
    compare: dict = field(default_factory=dict)
    reload: dict = field(default_factory=dict)
    big: dict = field(default_factory=dict)
    delta: dict = field(default_factory=dict)
    small: dict = field(default_factory=dict)
    #: bench/floor.py: the same pushes by a client that costs ~nothing, into the same kind of registry.
    floor: dict = field(default_factory=dict)
    ratios: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


BENCH_KEY_PASSWORD = "bench-throwaway-key"


def rate(nbytes: int, seconds: float | None) -> float | None:
    return nbytes / seconds / 1e6 if seconds else None


def run_summary(run: Run | None, nbytes: int | None = None) -> dict:
    if run is None:
        return {"ok": False}
    out = {"ok": run.ok, "wall_s": round(run.wall_s, 3), "peak_rss_mb": round(run.rss_mb, 1),
           "cpu_s": round(run.cpu_s, 2), "registry_cpu_s": round(run.server_cpu_s, 2)}
    if nbytes:
        out["mb_per_s"] = round(rate(nbytes, run.wall_s), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.3, help="unique corpus bytes (GB, 1e9)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each step; the best counts")
    ap.add_argument("--small-images", type=int, default=200, help="many-small-images case; 0 skips it")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--base-fraction", type=float, default=0.25, help="share of the corpus in the shared base layer")
    ap.add_argument("--big-layer-gb", type=float, default=2.0, help="single-layer image size; 0 skips that case")
    ap.add_argument("--workdir", type=Path, help="scratch directory (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir afterwards")
    ap.add_argument("--airgap-cmd", default=f"{shlex.quote(sys.executable)} -m airgap",
                    help="how to invoke the CLI (default: this python -m airgap)")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json")
    ap.add_argument("--cases", default=",".join(CASES),
                    help=f"comma-separated subset of {','.join(CASES)} (iteration; a full run is the measure)")
    args = ap.parse_args(argv)
    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    if not args.cases <= set(CASES):
        ap.error(f"--cases: unknown {', '.join(sorted(args.cases - set(CASES)))} (known: {', '.join(CASES)})")

    require_tools("docker-registry", SKOPEO_BIN)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = args.workdir.resolve()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="airgap-bench-"))
    bench = Bench(workdir, shlex.split(args.airgap_cmd))
    res = Results()
    res.machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "skopeo": tool_version([SKOPEO_BIN, "--version"]),
        "registry": tool_version(["/usr/bin/docker-registry", "--version"]),
        "airgap_cmd": args.airgap_cmd,
    }
    registries: list[RegistryProcess] = []
    bench.servers = registries
    try:
        _bench(args, bench, res, registries)
    finally:
        for rp in registries:
            rp.stop()
        res.errors = bench.errors
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(asdict(res), indent=2) + "\n")
        print_table(res)
        print(f"\nresults: {args.results}")
        if args.keep:
            print(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bench.errors else 0


def _fresh_registry(work: Path, name: str, registries: list[RegistryProcess]):
    """A new, empty registry (storage and all): every timed run starts from nothing, no mounts."""
    path = work / name
    shutil.rmtree(path, ignore_errors=True)
    rp = start_registry(path)
    registries.append(rp)
    return rp


def _stop(rp: RegistryProcess, registries: list[RegistryProcess]) -> None:
    rp.stop()
    registries.remove(rp)
    shutil.rmtree(rp.workdir, ignore_errors=True)


def _best(runs: list[Run | None]) -> Run | None:
    ok = [r for r in runs if r is not None and r.ok]
    return min(ok, key=lambda r: r.wall_s) if ok else None


def _timed_sum(name: str, runs: list[Run]) -> Run:
    """Several child processes run one after another, as one step (skopeo per image, then tar)."""
    first = runs[0]
    return Run(name, first.argv, sum(r.wall_s for r in runs), max(r.maxrss_kib for r in runs),
               max(r.returncode for r in runs), first.stdout_path, first.stderr_path,
               cpu_s=sum(r.cpu_s for r in runs), server_cpu_s=sum(r.server_cpu_s for r in runs))


#: What a run measures, in order: the 1.3 GB corpus (bundle, load, reload), 200 small images, a
#: delta bundle, one big layer.
CASES = ("corpus", "small", "delta", "big")


def _bench(args, bench: Bench, res: Results, registries: list[RegistryProcess]) -> None:
    if "corpus" in args.cases:
        _corpus(args, bench, res, registries)
    # -- 200 small images: load vs skopeo sync, registry to registry ------------------------
    if args.small_images > 0 and "small" in args.cases:
        _small_images(args, bench, res, registries)
    # -- patch release: a delta bundle ---------------------------------------------------------
    if "delta" in args.cases:
        reg = _fresh_registry(bench.workdir, "registry-delta", registries)
        _delta(bench, res, reg.registry)
        _stop(reg, registries)
    # -- one big layer -----------------------------------------------------------------------
    if args.big_layer_gb > 0 and "big" in args.cases:
        a = _fresh_registry(bench.workdir, "registry-big-a", registries)
        b = _fresh_registry(bench.workdir, "registry-big-b", registries)
        _big_layer(args, bench, res, a.registry, b.registry, bench.workdir / "layout")


def _corpus(args, bench: Bench, res: Results, registries: list[RegistryProcess]) -> None:
    work = bench.workdir
    total = int(args.size_gb * GB)
    base = int(total * args.base_fraction)

    # -- corpus, served by a source registry -------------------------------------------------
    layout = work / "layout"
    print(f"generating corpus: {total / GB:.2f} GB, {args.images} images, base layer {base / GB:.2f} GB ...",
          flush=True)
    t0 = time.perf_counter()
    # Two images carry a small gzip layer (realistic media types) without slowing generation much.
    refs = make_corpus(layout, total_bytes=total, images=args.images, base_bytes=base, seed=1,
                       gzip_images=2, gzip_layer_bytes=min(16 * MiB, total // 50))
    gen_s = time.perf_counter() - t0
    blobs = layout_blobs(layout)
    unique = dir_bytes(layout / "blobs")
    res.corpus = {
        "images": len(refs),
        "unique_bytes": unique,
        "blobs": len(blobs),
        "base_layer_bytes": base,
        "generate_s": round(gen_s, 2),
        "generate_mb_per_s": round(rate(unique, gen_s), 1),
        "runs": args.runs,
    }
    src = _fresh_registry(work, "registry-src", registries).registry
    print("pushing the corpus into the source registry (untimed) ...", flush=True)
    for ref in refs:
        bench.skopeo(f"seed-{ref}", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                     f"oci:{layout}:{ref}", f"docker://{src.host}/corpus/{ref}:0.1.0")
    images_file = work / "IMAGES.md"
    lines = ["```yaml airgap", "release: 0.1.0", "images:"]
    for ref in refs:
        lines += [f"  - name: {ref}", f"    source: {src.host}/corpus/{ref}:0.1.0"]
    images_file.write_text("\n".join(lines + ["```", ""]))

    bundle = work / "bundle.tar"
    bundles, baselines, loads, copies, reloads, floors = [], [], [], [], [], []
    load_argv: list[str] = []
    for i in range(1, args.runs + 1):
        # -- bundle: pull + pack + sign, from the registry, with a cold local store ---------
        print(f"[run {i}/{args.runs}] airgap bundle (from the registry) ...", flush=True)
        shutil.rmtree(work / "store", ignore_errors=True)
        bundle.unlink(missing_ok=True)
        bundles.append(bench.airgap(f"bundle-{i}", *bundle_args(work, images_file, bundle),
                                    "--insecure-registry"))
        # -- the same with skopeo: copy into one OCI layout, then tar it --------------------
        print(f"[run {i}/{args.runs}] skopeo copy into an OCI layout + tar ...", flush=True)
        sk_layout, sk_tar = work / "skopeo-layout", work / "skopeo.tar"
        shutil.rmtree(sk_layout, ignore_errors=True)
        sk_tar.unlink(missing_ok=True)
        steps = [bench.skopeo(f"skopeo-pull-{i}-{ref}", "copy", "--quiet", "--preserve-digests",
                              "--src-tls-verify=false", f"docker://{src.host}/corpus/{ref}:0.1.0",
                              f"oci:{sk_layout}:{ref}") for ref in refs]
        steps.append(bench.run(f"tar-{i}", ["tar", "-cf", str(sk_tar), "-C", str(sk_layout), "."]))
        baselines.append(_timed_sum(f"skopeo-bundle-{i}", steps))
        shutil.rmtree(sk_layout, ignore_errors=True)
        sk_tar.unlink(missing_ok=True)
        if bundles[-1] is None:
            break
        # -- load (verification included) into an empty registry ----------------------------
        print(f"[run {i}/{args.runs}] airgap load, then a no-op reload ...", flush=True)
        rp = _fresh_registry(work, "registry-load", registries)
        load_argv = load_args(work, bundle, f"{rp.registry.host}/bench")
        run = bench.airgap(f"load-{i}", *load_argv)
        loads.append(run)
        if run is not None:
            if i == args.runs:
                res.load = run_summary(run, unique)
                res.load["report"] = run.stdout_json()
                committed = rp.registry.committed_blobs()
                wanted = layout_ref_digests(layout)
                repos = sorted(rp.registry.catalog())
                # upstream naming: bench/<source host>/corpus/<ref>
                repo_of = {ref: next((r for r in repos if r.endswith(f"/corpus/{ref}")), "") for ref in refs}
                res.compare = {
                    "airgap_committed_all_layout_blobs": blobs <= committed,
                    "airgap_missing_blobs": len(blobs - committed),
                    "airgap_extra_blobs": len(committed - blobs),
                    "airgap_manifests_by_digest": all(
                        rp.registry.manifest_digest(repo_of[ref], wanted[ref]) == wanted[ref] for ref in refs),
                    "airgap_repos": repos,
                }
            reload = bench.airgap(f"reload-{i}", *load_argv)
            reloads.append(reload)
            if i == args.runs and reload is not None:
                res.reload = run_summary(reload)
                res.compare["blobs_unchanged_after_reload"] = rp.registry.committed_blobs() == committed
        _stop(rp, registries)
        # -- what the registry allows: the same pushes by a client that costs ~nothing ------
        print(f"[run {i}/{args.runs}] floor: the load's pushes by bench/floor.py ...", flush=True)
        floors += _floor_runs(bench, registries, work, f"load-{i}", bundle, LOAD_FLOOR_STREAMS)
        # -- skopeo copy from the OCI layout into an empty registry -------------------------
        print(f"[run {i}/{args.runs}] skopeo copy from the OCI layout ...", flush=True)
        rp = _fresh_registry(work, "registry-skopeo", registries)
        copies.append(_timed_sum(f"skopeo-load-{i}", [
            bench.skopeo(f"skopeo-{i}-{ref}", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                         f"oci:{layout}:{ref}", f"docker://{rp.registry.host}/bench/{ref}:0.1.0") for ref in refs]))
        _stop(rp, registries)

    best = {"bundle": _best(bundles), "skopeo_bundle": _best(baselines), "load": _best(loads),
            "skopeo_load": _best(copies), "reload": _best(reloads)}
    res.bundle = run_summary(best["bundle"], unique)
    res.bundle["runs_s"] = [round(r.wall_s, 2) if r else None for r in bundles]
    if bundle.is_file():
        res.bundle["bundle_bytes"] = bundle.stat().st_size
    res.skopeo = {"bundle": run_summary(best["skopeo_bundle"], unique),
                  "load": run_summary(best["skopeo_load"], unique)}
    res.skopeo["bundle"]["runs_s"] = [round(r.wall_s, 2) for r in baselines]
    res.skopeo["load"]["runs_s"] = [round(r.wall_s, 2) for r in copies]
    res.load.update(run_summary(best["load"], unique))
    res.load["runs_s"] = [round(r.wall_s, 2) if r else None for r in loads]
    if best["reload"] is not None:
        res.reload.update(run_summary(best["reload"]))
    res.ratios["bundle"] = _ratio(best["bundle"], best["skopeo_bundle"])
    res.ratios["load"] = _ratio(best["load"], best["skopeo_load"])
    _record_floor(res, "load", floors, best["load"], best["skopeo_load"])
    _stop(next(r for r in registries if r.registry is src), registries)


def _ratio(ours: Run | None, theirs: Run | None) -> float | None:
    if ours is None or theirs is None or not theirs.wall_s:
        return None
    return round(ours.wall_s / theirs.wall_s, 3)


def _small_images(args, bench: Bench, res: Results, registries: list[RegistryProcess]) -> None:
    """Many small images (a config and one 64 KiB layer each, one shared 1 MiB base): per-image
    overhead, not bandwidth. airgap loads them from a bundle; skopeo sync (one process) copies them
    from one registry to another."""
    work = bench.workdir / "small"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    layout = work / "layout"
    n = args.small_images
    print(f"small images: generating {n} ...", flush=True)
    shared = LayerSpec(1 * MiB, seed=7000)
    refs = [f"s{k:03d}" for k in range(n)]
    for k, ref in enumerate(refs):
        add_image(layout, ref, layers=[shared, LayerSpec(64 << 10, seed=7001 + k)], seed=7001 + k)
    images_file = work / "IMAGES.md"
    write_images_file(images_file, layout, refs)
    bundle = work / "small.tar"
    if bench.airgap("small-bundle", *bundle_args(work, images_file, bundle)) is None:
        res.small = {"ok": False, "failed": "bundle"}
        return
    src = _fresh_registry(work, "registry-src", registries)
    print("small images: seeding the source registry for skopeo sync (untimed) ...", flush=True)
    sync_yaml = work / "sync.yaml"
    sync_yaml.write_text(f"{src.registry.host}:\n  tls-verify: false\n  images:\n"
                         + "".join(f"    small/{ref}: ['0.1.0']\n" for ref in refs))
    # Seeded by airgap itself (untimed): one process instead of 200 skopeo runs.
    if bench.airgap("small-seed", *load_args(work, bundle, f"{src.registry.host}/small")) is None:
        res.small = {"ok": False, "failed": "seeding the source registry"}
        return
    loads, syncs, floors = [], [], []
    for i in range(1, args.runs + 1):
        print(f"[run {i}/{args.runs}] small images: airgap load, floor, skopeo sync ...", flush=True)
        rp = _fresh_registry(work, "registry-load", registries)
        loads.append(bench.airgap(f"small-load-{i}", *load_args(work, bundle, f"{rp.registry.host}/small")))
        _stop(rp, registries)
        floors += _floor_runs(bench, registries, work, f"small-{i}", bundle, SMALL_FLOOR_STREAMS)
        rp = _fresh_registry(work, "registry-sync", registries)
        syncs.append(bench.skopeo(f"small-sync-{i}", "sync", "--src", "yaml", "--dest", "docker",
                                  "--preserve-digests", "--dest-tls-verify=false", str(sync_yaml),
                                  f"{rp.registry.host}/synced"))
        _stop(rp, registries)
    _stop(src, registries)
    best_load, best_sync = _best(loads), _best(syncs)
    res.small = {"ok": best_load is not None, "images": n, "load": run_summary(best_load),
                 "skopeo_sync": run_summary(best_sync),
                 "load_runs_s": [round(r.wall_s, 2) if r else None for r in loads],
                 "sync_runs_s": [round(r.wall_s, 2) for r in syncs]}
    res.ratios["small_load"] = _ratio(best_load, best_sync)
    _record_floor(res, "small_load", floors, best_load, best_sync)


#: Streams bench/floor.py tries (each into a fresh registry; the fastest counts): the load's own
#: choice for the corpus (total / largest = 4) and more, and for small images airgap's default
#: concurrency (8) and twice that.
LOAD_FLOOR_STREAMS = (4, 8)
SMALL_FLOOR_STREAMS = (8, 16)


def _floor_runs(bench: Bench, registries: list[RegistryProcess], work: Path, name: str, bundle: Path,
                streams: tuple[int, ...]) -> list[Run]:
    runs = []
    for n in streams:
        rp = _fresh_registry(work, "registry-floor", registries)
        runs.append(bench.run(f"floor-{name}-{n}", [sys.executable, str(ROOT / "bench" / "floor.py"), str(bundle),
                                                     f"{rp.registry.host}/floor", "--streams", str(n)]))
        _stop(rp, registries)
        if not runs[-1].ok:
            bench.errors.append(f"bench/floor.py failed: {runs[-1].stderr_tail(2000)}")
    return runs


def _record_floor(res: Results, key: str, floors: list[Run], ours: Run | None, theirs: Run | None) -> None:
    """The floor's wall time, its ratio to skopeo's (the lowest ratio any client reaches on this
    registry and disk), and airgap's wall time over it (what airgap itself adds)."""
    best = _best(floors)
    res.floor[key] = {**run_summary(best), "runs_s": [round(r.wall_s, 2) for r in floors],
                      "over_skopeo": _ratio(best, theirs), "airgap_over_floor": _ratio(ours, best)}


def _reachable_blobs(layout: Path, ref: str) -> set[str]:
    """Digests of every manifest, config and layer an image in a layout reaches."""
    index = json.loads((layout / "index.json").read_text())
    root = next(m["digest"] for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref)
    out, todo = set(), [root]
    while todo:
        d = todo.pop()
        out.add(d)
        doc = json.loads((layout / "blobs" / "sha256" / d.split(":")[1]).read_bytes())
        todo += [m["digest"] for m in doc.get("manifests", [])]
        out.update(x["digest"] for x in doc.get("layers", []) + ([doc["config"]] if "config" in doc else []))
    return out


def _delta(bench: Bench, res: Results, a) -> None:
    """Release 2 gives one image one new layer: how big is the delta, and how long does it load?"""
    work = bench.workdir / "delta"
    work.mkdir(exist_ok=True)
    layout = work / "layout"
    shared = LayerSpec(64 * MB, seed=9000)
    own = {n: LayerSpec(32 * MB, seed=9000 + n) for n in (1, 2, 3)}
    new_layer = LayerSpec(48 * MB, seed=9100)
    for n in (1, 2, 3):
        add_image(layout, f"app{n}", layers=[shared, own[n]], seed=n)
    add_image(layout, "app2-r2", layers=[shared, own[2], new_layer], seed=2)
    r1, r2 = work / "IMAGES-r1.md", work / "IMAGES-r2.md"
    for path, release, refs in ((r1, "1.0.0", ["app1", "app2", "app3"]), (r2, "2.0.0", ["app1", "app2-r2", "app3"])):
        lines = ["```yaml airgap", f"release: {release}", "images:"]
        for i, ref in enumerate(refs, start=1):
            lines += [f"  - name: app{i}", f"    source: oci:{layout}:{ref}"]
        path.write_text("\n".join(lines + ["```", ""]))
    full1, full2, delta = work / "r1.tar", work / "r2.tar", work / "r2-delta.tar"
    print("delta: bundles for release 1, release 2 and the delta ...", flush=True)
    for name, images, out, extra in (("delta-full1", r1, full1, []), ("delta-full2", r2, full2, []),
                                     ("delta-bundle", r2, delta, ["--base", str(full1)])):
        env_epoch = {"delta-full1": "1700000000"}.get(name, "1700100000")
        os.environ["SOURCE_DATE_EPOCH"] = env_epoch
        try:
            run = bench.airgap(name, *bundle_args(work, images, out), *extra)
        finally:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        if run is None:
            res.delta = {"ok": False, "failed": name}
            return
    new_blobs = _reachable_blobs(layout, "app2-r2") - set().union(*(_reachable_blobs(layout, r)
                                                                     for r in ("app1", "app2", "app3")))
    new_bytes = sum((layout / "blobs" / "sha256" / d.split(":")[1]).stat().st_size for d in new_blobs)
    whole_image = sum((layout / "blobs" / "sha256" / d.split(":")[1]).stat().st_size
                      for d in _reachable_blobs(layout, "app2-r2"))
    print("delta: load release 1, then the delta ...", flush=True)
    bench.airgap("delta-load1", *load_args(work, full1, f"{a.host}/delta"))
    run = bench.airgap("delta-load", *load_args(work, delta, f"{a.host}/delta"))
    res.delta = {
        "ok": run is not None,
        "new_blob_bytes": new_bytes,
        "delta_bundle_bytes": delta.stat().st_size,
        "full_bundle_bytes": full2.stat().st_size,
        "whole_image_delta_bytes": whole_image,
        "delta_over_new_blobs": round(delta.stat().st_size / new_bytes, 4),
        "delta_over_whole_image": round(delta.stat().st_size / whole_image, 4),
        "load": run_summary(run),
    }


def _big_layer(args, bench: Bench, res: Results, a, b, corpus_layout: Path) -> None:
    work = bench.workdir
    # The corpus is no longer needed; free its page cache and disk before writing gigabytes more.
    if not args.keep:
        shutil.rmtree(corpus_layout, ignore_errors=True)
        (work / "bundle.tar").unlink(missing_ok=True)
    size = int(args.big_layer_gb * GB)
    layout = work / "big-layout"
    print(f"big layer: generating {size / GB:.2f} GB ...", flush=True)
    t0 = time.perf_counter()
    add_image(layout, "big", layers=[LayerSpec(size, seed=424242)], seed=2)
    gen_s = time.perf_counter() - t0
    nbytes = dir_bytes(layout / "blobs")
    res.big = {"layer_bytes": size, "generate_s": round(gen_s, 2)}
    images_file = work / "IMAGES-big.md"
    write_images_file(images_file, layout, ["big"])
    bundle = work / "big-bundle.tar"
    print("big layer: airgap bundle ...", flush=True)
    run = bench.airgap("big-bundle", *bundle_args(work, images_file, bundle))
    res.big["bundle"] = run_summary(run, nbytes)
    if run is not None:
        print("big layer: airgap load ...", flush=True)
        run = bench.airgap("big-load", *load_args(work, bundle, f"{a.host}/bigbench"))
        res.big["load"] = run_summary(run, nbytes)
        if run is not None:
            res.big["load"]["report"] = run.stdout_json()
    print("big layer: skopeo copy ...", flush=True)
    r = bench.skopeo("big-skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                     f"oci:{layout}:big", f"docker://{b.host}/bigbench/big:0.1.0")
    res.big["skopeo"] = run_summary(r, nbytes)


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


TARGETS = {"bundle": 0.6, "load": 0.40, "small_load": 0.35}  # issue 14: wall time over skopeo's
RELOAD_TARGET_S = 0.3
RSS_TARGET_MB = 100.0


def _row(name: str, ours, theirs, ratio, target, ok) -> str:
    verdict = "-" if ok is None else ("yes" if ok else "NO")
    return (f"{name:<44} {_fmt(ours, '.2f'):>9} {_fmt(theirs, '.2f'):>9} {_fmt(ratio, '.3f'):>7} "
            f"{target:>8} {verdict:>4}")


def print_table(res: Results) -> None:
    c = res.corpus
    print()
    if c:
        print(f"corpus: {c['images']} images, {c['unique_bytes'] / GB:.3f} GB unique in {c['blobs']} blobs, "
              f"base layer {c['base_layer_bytes'] / GB:.3f} GB; best of {c.get('runs', 1)} runs")
    sk = res.skopeo or {}
    print(f"{'measure':<44} {'airgap s':>9} {'skopeo s':>9} {'ratio':>7} {'target':>8} {'ok':>4}")
    print("-" * 86)
    for key, name, ours, theirs in (
            ("bundle", "bundle: pull+pack+sign vs copy to layout+tar", res.bundle, sk.get("bundle", {})),
            ("load", "load, verified vs skopeo copy from layout", res.load, sk.get("load", {})),
            ("small_load", f"{res.small.get('images', 0)} small images: load vs skopeo sync",
             res.small.get("load", {}), res.small.get("skopeo_sync", {}))):
        ratio = res.ratios.get(key)
        print(_row(name, ours.get("wall_s"), theirs.get("wall_s"), ratio, f"<= {TARGETS[key]:.2f}",
                   None if ratio is None else ratio <= TARGETS[key]))
    for key, name in (("load", "load"), ("small_load", f"{res.small.get('images', 0)} small images")):
        f = res.floor.get(key)
        if f and f.get("wall_s") is not None:
            print(f"  {name}: floor {f['wall_s']:.2f} s = {_fmt(f['over_skopeo'], '.3f')} x skopeo "
                  f"(target {TARGETS[key]:.2f}); airgap = {_fmt(f['airgap_over_floor'], '.3f')} x the floor "
                  f"(bench/floor.py: the same pushes by a client that costs ~nothing)")
    reload_s = res.reload.get("wall_s")
    print(_row("no-op reload (s)", reload_s, None, None, f"<= {RELOAD_TARGET_S} s",
               None if reload_s is None else reload_s <= RELOAD_TARGET_S))
    rss = {"bundle": res.bundle, "load": res.load, "reload": res.reload, "small load": res.small.get("load", {}),
           "big-layer bundle": res.big.get("bundle", {}), "big-layer load": res.big.get("load", {})}
    for name, d in rss.items():
        mb = d.get("peak_rss_mb") if d else None
        if mb is not None:
            print(_row(f"peak RSS MB, {name}", mb, None, None, f"<= {RSS_TARGET_MB:.0f}", mb <= RSS_TARGET_MB))
    if res.big:
        big_s = res.big.get("skopeo", {}).get("wall_s")
        for step in ("bundle", "load"):
            d = res.big.get(step, {})
            print(_row(f"big layer {res.big['layer_bytes'] / GB:.1f} GB: {step} (MB/s {_fmt(d.get('mb_per_s'))})",
                       d.get("wall_s"), big_s if step == "load" else None,
                       round(d["wall_s"] / big_s, 3) if step == "load" and d.get("wall_s") and big_s else None,
                       "", None))
    runs = {"bundle": res.bundle.get("runs_s"), "skopeo layout+tar": sk.get("bundle", {}).get("runs_s"),
            "load": res.load.get("runs_s"), "skopeo copy": sk.get("load", {}).get("runs_s"),
            "small load": res.small.get("load_runs_s"), "skopeo sync": res.small.get("sync_runs_s"),
            "load floor": res.floor.get("load", {}).get("runs_s"),
            "small floor": res.floor.get("small_load", {}).get("runs_s")}
    print("runs (s): " + "; ".join(f"{k} {v}" for k, v in runs.items() if v))
    cpu = {"bundle": res.bundle, "skopeo layout+tar": sk.get("bundle", {}), "load": res.load,
           "skopeo copy": sk.get("load", {}), "small load": res.small.get("load", {}),
           "skopeo sync": res.small.get("skopeo_sync", {}), "load floor": res.floor.get("load", {}),
           "small floor": res.floor.get("small_load", {})}
    print("CPU s of the best run (tool + registries): " + "; ".join(
        f"{k} {d['cpu_s']:.2f} + {d['registry_cpu_s']:.2f}" for k, d in cpu.items() if d and "cpu_s" in d))
    cmp_ = res.compare
    if cmp_:
        print(f"airgap committed every layout blob: {cmp_.get('airgap_committed_all_layout_blobs')} "
              f"(missing {cmp_.get('airgap_missing_blobs')}, extra {cmp_.get('airgap_extra_blobs')}); "
              f"manifests by digest: {cmp_.get('airgap_manifests_by_digest')}; "
              f"no-op reload left storage unchanged: {cmp_.get('blobs_unchanged_after_reload')}")
    d = res.delta
    if d.get("ok"):
        print(f"patch release (one image gains one {d['new_blob_bytes'] / MB:.0f} MiB layer): delta bundle "
              f"{d['delta_bundle_bytes'] / MB:.1f} MiB = {d['delta_over_new_blobs']:.3f} x the new blobs, "
              f"{d['delta_bundle_bytes'] / d['full_bundle_bytes']:.3f} x the full bundle; "
              f"delta load {d['load'].get('wall_s')} s")
    if res.errors:
        print(f"\n{len(res.errors)} airgap step(s) failed; see errors in results.json")


if __name__ == "__main__":
    sys.exit(main())
