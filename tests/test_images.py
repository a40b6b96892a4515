"""Slow tier: each distinct image builds, runs, and serves on real Postgres and Redis."""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Render
from .containers import (
    base_image,
    build,
    context_digest,
    eventually,
    http,
    lab,
    published_port,
    record,
    wait_healthy,
)
from .matrix import VARIANTS, Variant

pytestmark = pytest.mark.images

API_KEY = secrets.token_hex(32)
VERSION = "v0.0.0-test"


def image_key(variant: Variant) -> str:
    """Variants with the same key render the same Dockerfile, lock file and source."""
    # Railway builds without cache mounts; Modal's app module joins the source; serverless
    # settings serve no metrics by default.
    # Extra services add their packages to the source.
    key = [variant.features.id, *variant.services]
    if variant.deploy_target == "railway" or variant.topology == "serverless":
        key.insert(0, variant.deploy_target)
    return "-".join(key)


GROUPS: dict[str, list[Variant]] = defaultdict(list)
for _variant in VARIANTS:
    GROUPS[image_key(_variant)].append(_variant)
IMAGES = [group[0] for group in GROUPS.values()]


def test_variants_with_one_key_share_one_image(render: Render) -> None:
    digests = {key: {context_digest(render(v)) for v in group} for key, group in GROUPS.items()}
    assert all(len(found) == 1 for found in digests.values()), digests
    assert len({next(iter(found)) for found in digests.values()}) == len(GROUPS)


@dataclass(frozen=True)
class Processes:
    """How a platform runs the image: the migration, the API's port, the worker."""

    migrate: list[list[str]]
    port: int
    worker: list[str]
    ready_path: str = "/health/ready"


def processes(project: Path, variant: Variant) -> Processes:
    """Railway's config as code where it differs from the image's own contract."""
    image = Processes(
        migrate=[["my-service", "migrate"]], port=8000, worker=["my-service", "worker"]
    )
    if variant.deploy_target != "railway":
        return image
    api = json.loads((project / "railway.json").read_text())["deploy"]
    worker = image.worker
    if variant.features.worker:
        worker = shlex.split(
            json.loads((project / "railway.worker.json").read_text())["deploy"]["startCommand"]
        )
    # Railway runs each pre-deploy command in a shell and tells the app its port in PORT.
    return Processes(
        migrate=[["sh", "-c", command] for command in api["preDeployCommand"]],
        port=8080,
        worker=worker,
        ready_path=api["healthcheckPath"],
    )


@pytest.mark.parametrize("variant", IMAGES, ids=image_key)
def test_image(render: Render, variant: Variant) -> None:
    project = render(variant)
    slug = "my-service"
    tag = f"slipway-test/{slug}:{image_key(variant).replace('+', '-')}"
    built = build(
        project, tag, python_version="3.12", build_args={"IMAGE_TAG": VERSION, "GIT_SHA": "abc1234"}
    )
    record(
        "images",
        {"image": image_key(variant), "build_seconds": built.seconds, "size_mb": built.size_mb},
    )
    print(f"{image_key(variant)}: built in {built.seconds}s, {built.size_mb} MB")

    with lab("slipway-img") as env:
        env.images.append(tag)
        image = env.client.images.get(tag)
        assert image.attrs["Config"]["User"] == "10001:10001"
        listing = env.once(tag, ["sh", "-c", "ls -A /app; id -u"], {})
        assert listing.split() == [".venv", "pyproject.toml", "10001"]

        postgres = env.run(
            base_image("POSTGRES_IMAGE", project),
            "postgres",
            environment={"POSTGRES_PASSWORD": "postgres", "POSTGRES_DB": "app"},
            healthcheck={
                "test": ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U postgres -d app"],
                "interval": 1_000_000_000,
            },
        )
        settings = {
            "ENVIRONMENT": "production",
            "DATABASE_URL": "postgres://postgres:postgres@postgres:5432/app",
            "API_KEY": API_KEY,
            "LOG_FORMAT": "json",
        }
        redis = None
        if variant.features.redis:
            redis = env.run(base_image("REDIS_IMAGE", project), "redis")
            settings["REDIS_URL"] = "redis://redis:6379/0"
        wait_healthy(postgres)

        run = processes(project, variant)
        for command in run.migrate:
            env.once(tag, command, settings)
        env.once(tag, ["alembic", "downgrade", "base"], settings)
        for command in run.migrate:
            env.once(tag, command, settings)

        api = env.run(
            tag,
            "api",
            environment={**settings, "PORT": str(run.port)},
            ports={f"{run.port}/tcp": ("127.0.0.1", None)},
        )
        wait_healthy(api)
        base = f"http://127.0.0.1:{published_port(api, run.port)}"
        key = {"X-API-Key": API_KEY}

        assert http("GET", f"{base}/health") == (200, {"status": "ok"})
        status, ready = http("GET", f"{base}{run.ready_path}")
        assert status == 200, ready
        status, version = http("GET", f"{base}/version")
        assert (status, version["version"], version["image_tag"]) == (200, "0.1.0", VERSION)

        document = {"title": "hello", "content": "one two three"}
        if variant.features.pgvector:
            document["embedding"] = [1.0] + [0.0] * 1535
        status, created = http("POST", f"{base}/documents", document, key)
        assert status == 201, created
        assert http("GET", f"{base}/documents/{created['id']}", headers=key) == (200, created)
        if variant.features.pgvector:
            query = {"embedding": [1.0] + [0.0] * 1535, "limit": 1}
            status, hits = http("POST", f"{base}/documents/search", query, key)
            assert status == 200
            assert [hit["id"] for hit in hits] == [created["id"]]

        postgres.stop(timeout=10)
        eventually(lambda: http("GET", f"{base}/health/ready")[0] == 503)
        status, ready = http("GET", f"{base}/health/ready")
        assert ready["checks"]["database"].startswith("failed")
        postgres.start()
        eventually(lambda: http("GET", f"{base}/health/ready")[0] == 200, timeout=60)

        if redis is not None:
            # Without Redis the API still serves from PostgreSQL, unless Redis holds its job queue.
            queue = variant.features.worker and variant.topology != "serverless"
            redis.stop(timeout=10)
            expected = (503, "unavailable") if queue else (200, "degraded")
            eventually(lambda: http("GET", f"{base}/health/ready")[1]["status"] == expected[1])
            status, ready = http("GET", f"{base}/health/ready")
            assert (status, ready["status"]) == expected, ready
            assert http("GET", f"{base}/documents/{created['id']}", headers=key)[0] == 200
            redis.start()
            eventually(lambda: http("GET", f"{base}/health/ready")[1]["status"] == "ready")

        if variant.features.worker and variant.topology != "serverless":
            worker = env.run(tag, "worker", command=run.worker, environment=settings)
            status, job = http("POST", f"{base}/documents/{created['id']}/analysis", headers=key)
            assert status == 202, job

            def finished() -> dict[str, object] | None:
                _, current = http("GET", f"{base}/jobs/{job['id']}", headers=key)
                return current if current["status"] in {"complete", "failed"} else None

            result = eventually(finished, timeout=60)
            assert result["result"] == {"words": 3, "characters": 13}, result
            started = time.monotonic()
            worker.stop(timeout=30)
            assert worker.wait()["StatusCode"] == 0
            assert time.monotonic() - started < 10

        # Each extra service: the same image, its own command, no Redis settings, and the
        # database only if it owns tables (the API's migrate created them).
        for service in variant.services:
            database = {"DATABASE_URL": settings["DATABASE_URL"]}
            served = env.run(
                tag,
                service,
                command=[slug, "serve", service],
                environment={
                    "ENVIRONMENT": "production",
                    "API_KEY": API_KEY,
                    "PORT": "8000",
                    **(database if service in variant.service_tables else {}),
                },
                ports={"8000/tcp": ("127.0.0.1", None)},
            )
            wait_healthy(served)
            at = f"http://127.0.0.1:{published_port(served, 8000)}"
            assert http("GET", f"{at}/health") == (200, {"status": "ok"})
            assert http("GET", f"{at}/health/ready")[0] == 200
            assert http("GET", f"{at}/version")[1]["image_tag"] == VERSION
            assert http("GET", f"{at}/{service}/hello")[0] == 401
            status, hello = http("GET", f"{at}/{service}/hello", headers=key)
            assert (status, hello["service"]) == (200, service), hello
            if service in variant.service_tables:
                _, ready = http("GET", f"{at}/health/ready")
                assert ready["checks"] == {"database": "ok"}, ready
                item = {"content": "kept by " + service}
                status, stored = http("POST", f"{at}/{service}/items", item, headers=key)
                assert (status, stored["content"]) == (201, item["content"]), stored
                read = http("GET", f"{at}/{service}/items/{stored['id']}", headers=key)
                assert read == (200, stored)
            served.stop(timeout=30)
            assert served.wait()["StatusCode"] == 0

        api.stop(timeout=30)
        assert api.wait()["StatusCode"] == 0
