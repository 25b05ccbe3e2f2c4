"""`airgap build` and the whole `airgap bundle` pipeline with real builders: buildah (daemonless) and a
private Docker Engine, from small Dockerfiles with RUN, COPY, build args and a multi-stage target.

The images are checked where a user meets them: loaded into a real registry, their config read
with skopeo and their files read out of the layers pulled from it.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from builders import (BuilderSetupError, buildah_env, docker_load, export_docker_archive, make_busybox_base,
                      start_dockerd)
from conftest import run_skopeo
from helpers import airgap, run_load
from registry_server import MANIFEST_ACCEPT

BASE = "airgap-test-base:1"
EPOCH = "1700000000"
CREATED = "2023-11-14T22:13:20Z"
ORIGIN = "https://git.example.invalid/fixture-app.git"

DOCKERFILE = """\
ARG BASE_IMAGE=scratch
FROM ${BASE_IMAGE} AS build
ARG GREETING=default
RUN mkdir -p /out && echo "greeting=$GREETING" > /out/greeting.txt && echo made-by-run > /out/run.txt

FROM ${BASE_IMAGE} AS tools
COPY --from=build /out/ /opt/tools/
ENV TOOLS=1

FROM ${BASE_IMAGE}
COPY --from=build /out/greeting.txt /app/greeting.txt
COPY app.txt /app/app.txt
ENV APP_MODE=production
RUN cat /app/greeting.txt /app/app.txt > /app/seen-at-build.txt
"""

IMAGES_MD = f"""\
# Fixture images

```yaml airgap
release: 1.0.0
images:
  - name: fixture-app
    build:
      context: app
      dockerfile: app/Dockerfile
      args: {{BASE_IMAGE: "{BASE}", GREETING: from-images-md}}
  - name: fixture-tools
    tag: "9.9"
    build:
      context: app
      dockerfile: app/Dockerfile
      target: tools
      args: {{BASE_IMAGE: "{BASE}"}}
```
"""


# ----------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def buildah_storage(tmp_path_factory: pytest.TempPathFactory):
    """Private buildah storage for the whole session (exported to every airgap subprocess), holding
    the locally made busybox base image."""
    root = tmp_path_factory.mktemp("buildah")
    env = buildah_env(root)
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    try:
        try:
            make_busybox_base(env, BASE, root)
        except BuilderSetupError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield env
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory, buildah_storage) -> str:
    """DOCKER_HOST of a private dockerd holding the base image; always stopped at the end."""
    workdir = tmp_path_factory.mktemp("dockerd")
    try:
        daemon = start_dockerd(workdir)
    except BuilderSetupError as exc:
        pytest.skip(f"dockerd cannot start here, so the docker builder is not tested: {exc}")
    try:
        docker_load(daemon.host, export_docker_archive(buildah_storage, BASE, workdir / "base.tar"))
        yield daemon.host
    finally:
        daemon.stop()


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An IMAGES.md next to (not inside) a git checkout of the application sources."""
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "app" / "Dockerfile").write_text(DOCKERFILE)
    (src / "app" / "app.txt").write_text("copied-from-context\n")
    _git(src, "init", "-q", "-b", "main")
    _git(src, "add", ".")
    _git(src, "commit", "-q", "-m", "fixture")
    _git(src, "remote", "add", "origin", ORIGIN)
    (tmp_path / "IMAGES.md").write_text(IMAGES_MD)
    return tmp_path


# ----------------------------------------------------------------------------------------- helpers

def image_files(reg, repo: str, tag: str) -> dict[str, bytes]:
    """Regular files of an image, read from the layers as the registry serves them (later layers win)."""
    files: dict[str, bytes] = {}
    with reg.client() as c:
        manifest = c.get(reg.url(f"/v2/{repo}/manifests/{tag}"), headers={"Accept": MANIFEST_ACCEPT}).json()
        for layer in manifest["layers"]:
            blob = c.get(reg.url(f"/v2/{repo}/blobs/{layer['digest']}"), follow_redirects=True)
            blob.raise_for_status()
            data = blob.content
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        files["/" + member.name.lstrip("./")] = tar.extractfile(member).read()
    return files


def image_config(reg, repo: str, tag: str) -> dict:
    out = run_skopeo("inspect", "--config", *reg.skopeo_args(), f"docker://{reg.host}/{repo}:{tag}").stdout
    return json.loads(out)


def bundle_and_load(project: Path, reg, builder: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The whole pipeline as a user runs it: bundle (builds first), then load into the registry."""
    proc = airgap("bundle", "--images", "IMAGES.md", "--source", "src", "--builder", builder, "--store", "store",
                  "-o", "b.tar", "--no-chart", "--no-crds", cwd=project, env=env)
    run_load("b.tar", reg, "haystack", "--values-out", "v.yaml", cwd=project)
    return proc


def check_built_images(reg, revision: str) -> None:
    config = image_config(reg, "haystack/fixture-app", "1.0.0")
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.source"] == ORIGIN
    assert labels["org.opencontainers.image.revision"] == revision
    assert labels["org.opencontainers.image.created"] == CREATED  # from SOURCE_DATE_EPOCH
    assert config["created"].startswith("2023-11-14T22:13:20")
    assert "APP_MODE=production" in config["config"]["Env"]
    files = image_files(reg, "haystack/fixture-app", "1.0.0")
    assert files["/app/greeting.txt"] == b"greeting=from-images-md\n"        # build arg, RUN in stage 1
    assert files["/app/app.txt"] == b"copied-from-context\n"                  # COPY from the context
    assert files["/app/seen-at-build.txt"] == b"greeting=from-images-md\ncopied-from-context\n"  # final RUN
    assert "/bin/busybox" in files                                            # the base layer

    tools = image_config(reg, "haystack/fixture-tools", "9.9")                # target: tools, tag: 9.9
    assert "TOOLS=1" in tools["config"]["Env"] and "APP_MODE=production" not in tools["config"]["Env"]
    tool_files = image_files(reg, "haystack/fixture-tools", "9.9")
    assert tool_files["/opt/tools/greeting.txt"] == b"greeting=default\n"     # no GREETING arg for this one
    assert tool_files["/opt/tools/run.txt"] == b"made-by-run\n"
    assert "/app/app.txt" not in tool_files


# ----------------------------------------------------------------------------------------- tests

def test_buildah_pipeline_build_bundle_load(project, registry, buildah_storage):
    proc = bundle_and_load(project, registry, "buildah", {"SOURCE_DATE_EPOCH": EPOCH})
    assert "buildah" in proc.stderr
    check_built_images(registry, _git(project / "src", "rev-parse", "HEAD"))


def test_docker_pipeline_build_bundle_load(project, registry, dockerd):
    # --builder auto finds the daemon through DOCKER_HOST and says so.
    proc = bundle_and_load(project, registry, "auto", {"SOURCE_DATE_EPOCH": EPOCH, "DOCKER_HOST": dockerd})
    assert f"a Docker Engine answers at {dockerd}, building with docker" in proc.stderr
    check_built_images(registry, _git(project / "src", "rev-parse", "HEAD"))


def test_buildah_build_is_reproducible_with_source_date_epoch(project, buildah_storage):
    digests = []
    for store in ("store-a", "store-b"):
        out = airgap("build", "--source", "src", "--builder", "buildah", "--only", "fixture-app", "--store", store,
                     "--json", cwd=project, env={"SOURCE_DATE_EPOCH": EPOCH}).stdout
        digests.append(json.loads(out)[0]["digest"])
    assert digests[0] == digests[1]
    index = json.loads((project / "store-a" / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["fixture-app:1.0.0"]


def test_source_git_url_at_ref_is_cloned_and_labelled(project, tmp_path, buildah_storage):
    src = project / "src"
    first = _git(src, "rev-parse", "HEAD")
    (src / "app" / "app.txt").write_text("second commit\n")
    _git(src, "commit", "-q", "-am", "second")
    url = f"file://{src}"
    airgap("build", "--source", f"{url}@{first}", "--builder", "buildah", "--only", "fixture-app", "--store", "store",
           cwd=project)
    cfg = json.loads(run_skopeo("inspect", "--config", f"oci:{project / 'store'}:fixture-app:1.0.0").stdout)
    labels = cfg["config"]["Labels"]
    assert labels["org.opencontainers.image.source"] == url
    assert labels["org.opencontainers.image.revision"] == first
    # the checkout lives in the cache next to the store, at the commit asked for
    clones = list((project / "sources").iterdir())
    assert len(clones) == 1 and (clones[0] / "app" / "app.txt").read_text() == "copied-from-context\n"


@pytest.mark.parametrize("builder", ["buildah", "docker"])
def test_failing_build_names_the_image_and_shows_the_log_tail(project, builder, request):
    env = {"DOCKER_HOST": request.getfixturevalue("dockerd")} if builder == "docker" else {}
    request.getfixturevalue("buildah_storage")
    dockerfile = project / "src" / "app" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("ENV APP_MODE=production",
                                                         "RUN echo marker-before-failure && exit 3"))
    proc = airgap("bundle", "--source", "src", "--builder", builder, "--store", "store", "-o", "b.tar",
                  "--no-chart", "--no-crds", cwd=project, env=env, check=False)
    assert proc.returncode == 5, proc.stderr
    err = proc.stderr
    assert "IMAGES.md:6: image fixture-app:" in err and "failed" in err
    assert "marker-before-failure" in err and "Traceback" not in err
    assert not (project / "b.tar").exists()  # the pipeline stopped before packing


def test_missing_context_or_dockerfile_is_reported_before_any_build(project):
    text = IMAGES_MD.replace("      context: app\n      dockerfile: app/Dockerfile\n      target: tools",
                             "      context: app\n      dockerfile: app/Dockerfile.nope\n      target: tools")
    (project / "IMAGES.md").write_text(text)
    proc = airgap("build", "--source", "src", "--builder", "buildah", "--store", "store", cwd=project, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"airgap: error: IMAGES.md:11: image fixture-tools: Dockerfile "
                                   f"app/Dockerfile.nope not found in {ORIGIN}@"
                                   f"{_git(project / 'src', 'rev-parse', 'HEAD')[:12]} ({project / 'src'})")
    assert not (project / "store").exists()  # fixture-app (listed first) was not built

    (project / "IMAGES.md").write_text(IMAGES_MD.replace("context: app\n      dockerfile: app/Dockerfile\n      args",
                                                         "context: nowhere\n      dockerfile: app/Dockerfile\n      args"))
    proc = airgap("build", "--store", "store", cwd=project, check=False)
    assert proc.returncode == 2
    assert "IMAGES.md:6: image fixture-app: build context nowhere not found" in proc.stderr
    assert "give --source DIR or --source GIT_URL@REF" in proc.stderr


def test_only_names_must_be_built_images(project):
    proc = airgap("build", "--source", "src", "--only", "nope", "--store", "store", cwd=project, check=False)
    assert proc.returncode == 2
    assert "--only nope:" in proc.stderr and "fixture-app, fixture-tools" in proc.stderr


def test_unreachable_daemon_says_how_to_use_buildah(project, tmp_path):
    host = f"unix://{tmp_path}/no-such-docker.sock"
    proc = airgap("build", "--source", "src", "--builder", "docker", "--store", "store", cwd=project,
                  env={"DOCKER_HOST": host}, check=False)
    assert proc.returncode == 5
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"cannot reach the Docker Engine at {host}" in line and "--builder buildah" in line


def test_auto_falls_back_to_buildah_and_says_so(project, tmp_path, buildah_storage):
    host = f"unix://{tmp_path}/no-such-docker.sock"
    proc = airgap("build", "--source", "src", "--only", "fixture-tools", "--store", "store", cwd=project,
                  env={"DOCKER_HOST": host})
    assert f"no Docker Engine answers at {host}, building with buildah" in proc.stderr
    assert "fixture-tools:1.0.0 sha256:" in proc.stderr  # the store keeps built images under the release


def test_no_build_packs_what_the_store_has(project):
    proc = airgap("bundle", "--no-build", "--store", "store", "-o", "b.tar", "--no-chart", "--no-crds",
                  cwd=project, check=False)
    assert proc.returncode == 2
    assert "has no fixture-app:1.0.0: run `airgap build` first" in proc.stderr


MULTI_MD = """\
```yaml airgap
release: 2.0.0
images:
  - name: multi
    build: {context: app, dockerfile: app/Dockerfile.multi}
    platforms: [linux/amd64, linux/arm64]
```
"""


def test_buildah_builds_every_platform_an_entry_lists(project, registry, buildah_storage):
    # No RUN step: a foreign architecture's RUN would need qemu, COPY does not.
    (project / "src" / "app" / "Dockerfile.multi").write_text("FROM scratch\nCOPY app.txt /app.txt\n")
    (project / "IMAGES.md").write_text(MULTI_MD)
    airgap("bundle", "--source", "src", "--builder", "buildah", "--store", "store", "-o", "b.tar", "--no-chart",
           "--no-crds", cwd=project)
    run_load("b.tar", registry, "x", "--values-out", "v.yaml", cwd=project)
    raw = json.loads(run_skopeo("inspect", "--raw", *registry.skopeo_args(),
                                f"docker://{registry.host}/x/multi:2.0.0").stdout)
    assert sorted(m["platform"]["architecture"] for m in raw["manifests"]) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        cfg = json.loads(run_skopeo("inspect", "--config", "--override-arch", arch, *registry.skopeo_args(),
                                    f"docker://{registry.host}/x/multi:2.0.0").stdout)
        assert cfg["architecture"] == arch and cfg["config"]["Labels"]["org.opencontainers.image.version"] == "2.0.0"


def test_docker_builder_refuses_several_platforms(project, tmp_path):
    (project / "src" / "app" / "Dockerfile.multi").write_text("FROM scratch\nCOPY app.txt /app.txt\n")
    (project / "IMAGES.md").write_text(MULTI_MD)
    # checked before the daemon is asked for anything: no dockerd needed
    proc = airgap("build", "--source", "src", "--builder", "docker", "--store", "store", cwd=project,
                  env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}, check=False)
    assert proc.returncode == 5
    assert "one platform per image" in proc.stderr and "--builder buildah" in proc.stderr
