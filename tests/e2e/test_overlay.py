"""IMAGES.md ``overlay:``: the observability layer applied on top of an image built from an unchanged
upstream Dockerfile, with both real builders; checked in the images as the registry serves them.
"""

from __future__ import annotations

import pytest
from helpers import REPO, airgap
from test_build import (BASE, EPOCH, bundle_and_load, buildah_storage, dockerd, image_config,  # noqa: F401
                        image_files, project)

LAYER = REPO / "manifests/images/haystack-observability"

OVERLAY_MD = f"""\
```yaml airgap
release: 1.0.0
images:
  - name: fixture-app
    build:
      context: app
      dockerfile: app/Dockerfile
      args: {{BASE_IMAGE: "{BASE}", GREETING: from-images-md}}
    overlay:
      context: {LAYER}
      args: {{APP: "query.main:app", PORT: "8002", SERVICE: query}}
```
"""


@pytest.mark.parametrize("builder", ["buildah", "docker"])
def test_overlay_adds_the_observability_layer_to_the_upstream_build(project, registry, builder, request):
    env = {"SOURCE_DATE_EPOCH": EPOCH}
    request.getfixturevalue("buildah_storage")
    if builder == "docker":
        env["DOCKER_HOST"] = request.getfixturevalue("dockerd")
    (project / "IMAGES.md").write_text(OVERLAY_MD)
    bundle_and_load(project, registry, builder, env)

    config = image_config(registry, "haystack/fixture-app", "1.0.0")["config"]
    assert config["Cmd"] == ["python", "-m", "haystack_observability"]
    env_vars = dict(e.split("=", 1) for e in config["Env"])
    assert env_vars["HAYSTACK_APP"] == "query.main:app" and env_vars["HAYSTACK_PORT"] == "8002"
    assert env_vars["HAYSTACK_LOG_FORMAT"] == "json" and env_vars["PYTHONPATH"] == "/opt/haystack-observability"
    # offline: no model hub, no telemetry
    assert env_vars["HF_HUB_OFFLINE"] == "1" and env_vars["TRANSFORMERS_OFFLINE"] == "1"
    assert env_vars["HAYSTACK_TELEMETRY_ENABLED"] == "False"
    assert env_vars["APP_MODE"] == "production"  # the upstream image's own settings are kept
    assert config["Labels"]["org.opencontainers.image.base.name"] == "fixture-app:1.0.0-upstream"

    files = image_files(registry, "haystack/fixture-app", "1.0.0")
    for name in ("haystack_observability.py", "fetch_artifact.py"):
        assert files[f"/opt/haystack-observability/{name}"] == (LAYER / name).read_bytes()
    assert files["/app/greeting.txt"] == b"greeting=from-images-md\n"  # the upstream build, underneath
    # only the entry itself ships: the intermediate upstream image stays in the local store
    assert registry.catalog() == ["haystack/fixture-app"] and registry.tags("haystack/fixture-app") == ["1.0.0"]


def test_overlay_without_build_or_with_a_missing_context_is_refused(project):
    (project / "IMAGES.md").write_text(OVERLAY_MD.replace(str(LAYER), "no/such/dir"))
    proc = airgap("build", "--source", "src", "--store", "store", cwd=project, check=False)
    assert proc.returncode == 2 and "overlay context no/such/dir not found" in proc.stderr
    (project / "IMAGES.md").write_text("```yaml airgap\nrelease: 1.0.0\nimages:\n  - name: x\n"
                                       "    source: docker.io/library/busybox:1\n    overlay: {context: .}\n```\n")
    proc = airgap("build", "--store", "store", cwd=project, check=False)
    assert proc.returncode == 2 and "IMAGES.md:4: image x: overlay: applies to images built from source" in proc.stderr
