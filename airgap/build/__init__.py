"""`airgap build`: the IMAGES.md ``build:`` entries, built into the local content store.

Each image lands in the store (an OCI layout) tagged ``<name>:<tag or release>``, which is exactly
where ``airgap bundle`` looks for it. No registry is involved at any point.

    source.py   --source DIR | GIT_URL@REF -> a tree, its URL and commit (for the labels)
    plan.py     entries -> BuildTargets, every path checked before the first build
    docker.py   the Docker Engine (docker SDK), exported with docker save + archive.py
    buildah.py  daemonless buildah, exported into a scratch layout + the copy engine
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from airgap.build.plan import BuildTarget, Builder, BuiltImage, plan_builds
from airgap.build.source import SourceTree, resolve_source
from airgap.errors import BuildError, InputError
from airgap.imagesfile import ImagesFile
from airgap.places.layout import LayoutStore
from airgap.progress import Progress

BUILDERS = ("auto", "docker", "buildah")


def make_builder(kind: str = "auto", progress: Progress | None = None) -> Builder:
    """``auto``: the Docker Engine when one answers at DOCKER_HOST, else buildah (and says which)."""
    from airgap.build.buildah import BuildahBuilder
    from airgap.build.docker import DockerBuilder, daemon_answers, docker_host

    progress = progress or Progress()
    if kind == "docker":
        return DockerBuilder()
    if kind == "buildah":
        return BuildahBuilder()
    if kind != "auto":
        raise InputError(f"--builder {kind}: expected one of {', '.join(BUILDERS)}")
    if daemon_answers():
        progress.note(f"builder auto: a Docker Engine answers at {docker_host()}, building with docker")
        return DockerBuilder()
    if BuildahBuilder.available():
        progress.note(f"builder auto: no Docker Engine answers at {docker_host()}, building with buildah")
        return BuildahBuilder()
    raise BuildError("no builder: no Docker Engine answers at DOCKER_HOST and buildah is not installed "
                     "(apt-get install buildah, or start dockerd)")


def build_images(images: ImagesFile, store: Path, source: str | None = None, builder: str | Builder = "auto",
                 only: Sequence[str] = (), progress: Progress | None = None,
                 build_args: dict[str, str] | None = None) -> list[BuiltImage]:
    """Build the selected ``build:`` entries of ``images`` into the OCI layout at ``store``.

    Everything that can be checked without building (source, contexts, Dockerfiles, --only names)
    is checked first; then the builder is chosen, then images build one after another, stopping at
    the first failure.
    """
    progress = progress or Progress()
    cache = Path(store).parent
    if not any(e.build for e in images.images if not only or e.name in only):
        plan_builds(images, SourceTree(images.base_dir), only)  # checks the --only names; nothing to build
        packed = _pack_artifacts(images, Path(store), only, progress)
        if not packed:
            progress.note(f"{images.path}: no build: entries to build")
        return packed
    if source is None and images.source:
        # IMAGES.md's own pin; a relative directory is relative to IMAGES.md.
        local = images.base_dir / images.source
        source = str(local) if "@" not in images.source and local.is_dir() else images.source
    tree = resolve_source(source, images.base_dir, cache / "sources")
    targets = plan_builds(images, tree, only, build_args)
    packed = _pack_artifacts(images, Path(store), only, progress)
    multi = next((t for t in targets if len(t.platforms) > 1), None)
    if multi and builder == "docker":
        raise BuildError(f"{multi.where}: the Docker Engine builder makes one platform per image, this one wants "
                         f"{', '.join(str(p) for p in multi.platforms)}: use --builder buildah")
    if multi and builder == "auto":
        progress.note(f"builder auto: {multi.name} lists several platforms, which only buildah builds")
        builder = "buildah"
    chosen = make_builder(builder, progress) if isinstance(builder, str) else builder
    progress.note(f"building {len(targets)} image(s) from {tree.description} with {chosen.describe()}")
    layout = LayoutStore(Path(store), create=True)
    logs = cache / "build-logs"
    logs.mkdir(parents=True, exist_ok=True)
    built: list[BuiltImage] = []
    for target in targets:
        if target.base is not None:
            # buildah names local images localhost/NAME; the Docker Engine takes the tag as it is.
            base_ref = f"localhost/{target.base}" if chosen.name == "buildah" else target.base
            target = replace(target, args={**target.args, "BASE_IMAGE": base_ref})
        built.append(_build_one(chosen, target, layout, logs, progress))
    return packed + built


def _pack_artifacts(images: ImagesFile, store: Path, only: Sequence[str], progress: Progress) -> list[BuiltImage]:
    """The artifact: entries, packed into the store like built images (no builder needed)."""
    from airgap.artifact import pack_artifacts
    from airgap.build.plan import source_date_epoch

    t0 = time.monotonic()
    packed = pack_artifacts(images, store, tuple(only), source_date_epoch())
    seconds = time.monotonic() - t0
    for a in packed:
        progress.note(f"+ {a.ref} {a.digest[:19]} packed from {a.files} file(s), {a.size} bytes")
    return [BuiltImage(a.name, a.ref, a.digest, "artifact", seconds, None) for a in packed]


def _build_one(builder: Builder, target: BuildTarget, store: LayoutStore, logs: Path, progress: Progress) -> BuiltImage:
    log = logs / f"{target.name.replace('/', '_')}.log"
    log.write_text("")  # one log per image, the latest build's
    progress.note(f"build {target.ref} ({target.dockerfile.name}, context {target.context.name})")
    t0 = time.monotonic()
    digest = builder.build(target, store, log, progress)
    seconds = time.monotonic() - t0
    progress.note(f"+ {target.ref} {digest[:19]} built in {seconds:.1f} s")
    return BuiltImage(target.name, target.ref, digest, builder.name, seconds, log)


__all__ = ["BUILDERS", "BuiltImage", "SourceTree", "build_images", "make_builder"]
