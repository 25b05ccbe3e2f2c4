"""Isolated side: bundle -> private registry, then the files that point the cluster at it.

Nothing is pushed until the bundle has passed every check: structure (no truncated member, every
blob present), chart and CRD checksums, and the digest of every blob the target does not have yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from airgap.bundle.reader import open_bundle
from airgap.copy import CopyEngine, CopyJob, CopyReport
from airgap.emit.values import render_values
from airgap.fsutil import atomic_write
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, RegistryOptions, Target


@dataclass
class LoadOptions:
    target: Target
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    values_out: Path | None = None
    crds_out: Path | None = None
    chart_out: Path | None = None
    dry_run: bool = False
    concurrency: int = 8
    scratch: Path | None = None  # where a zstd bundle is decompressed (default: next to it)


@dataclass
class LoadResult:
    report: CopyReport
    values: str
    written: list[Path]
    seconds: float

    def to_json(self) -> dict:
        out = self.report.to_json()
        out["files_written"] = [str(p) for p in self.written]
        out["seconds"] = round(self.seconds, 3)
        return out


def load_bundle(bundle: Path, options: LoadOptions, progress: Progress | None = None) -> LoadResult:
    progress = progress or Progress()
    with open_bundle(bundle, options.scratch, progress) as reader:
        return _load(reader, bundle, options, progress)


def _load(reader, bundle: Path, options: LoadOptions, progress: Progress) -> LoadResult:
    t0 = time.monotonic()
    reader.check_complete()
    reader.verify_files()
    m = reader.manifest
    progress.note(f"bundle {bundle.name}: release {m.release}, {len(m.images)} images, "
                  f"{m.blob_count} blobs -> {options.target}")

    client = RegistryClient(options.target.host, options.registry)
    try:
        src = reader.store()
        jobs = [CopyJob(i.name, src, i.digest, RegistryStore(client, options.target.repository(i.name)), [i.tag])
                for i in m.images]
        engine = CopyEngine(concurrency=options.concurrency, progress=progress, verify_first=True,
                            dry_run=options.dry_run)
        report = engine.copy(jobs)
    finally:
        client.close()

    values = render_values(m, options.target, bundle.name)
    written: list[Path] = []
    if not options.dry_run:
        if options.values_out:
            atomic_write(options.values_out, values.encode())
            written.append(options.values_out)
        if options.crds_out:
            for f in m.crds:
                written.append(reader.extract_file(f, options.crds_out / Path(f.path).name))
        if options.chart_out and m.chart:
            written.append(reader.extract_file(m.chart, options.chart_out / Path(m.chart.path).name))
    return LoadResult(report, values, written, time.monotonic() - t0)
