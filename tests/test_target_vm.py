"""The vm target: blue-green releases over SSH, the host's compose file, and its nginx."""

from __future__ import annotations

import fcntl
import http.client
import ipaddress
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.models.containers import Container

from . import containers
from .conftest import Render
from .deploy import BARE_ENV, commands, dry_run, nox
from .matrix import QUESTIONS, WITH_SERVICES, Variant, full_variant, variants_of

VARIANTS = variants_of("vm")
FULL = full_variant("vm")
SERVICES = next(variant for variant in WITH_SERVICES if variant.deploy_target == "vm")
ENVIRONMENTS = ["staging", "production"]
SSH = "ssh -p 22 -o BatchMode=yes '$VM_USER@$VM_HOST'"
ON_HOST = f"{SSH} 'cd /srv/my-service && "  # every command but the first runs in the project

variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)
environments = pytest.mark.parametrize("environment", ENVIRONMENTS)


def image_of(project: Path) -> str:
    """The image repository the project's CI pushes to (the copier answer)."""
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return str(answers["image"])


def position(plan: list[str], fragment: str) -> int:
    """The index of the first command of `plan` that contains `fragment`."""
    found = [index for index, command in enumerate(plan) if fragment in command]
    assert found, f"no command contains {fragment!r}:\n" + "\n".join(plan)
    return found[0]


def assert_in_order(plan: list[str], fragments: list[str]) -> None:
    """Each fragment appears in `plan`, the first occurrences in this order."""
    positions = [position(plan, fragment) for fragment in fragments]
    assert positions == sorted(positions), "\n".join(plan)


# ---------------------------------------------------------------------------------------------
# Dry runs: the plan, in order, on the host


@environments
def test_deploy_locks_backs_up_and_migrates_before_switching(
    render: Render, environment: str
) -> None:
    project = render(FULL)
    image = f"{image_of(project)}:v1.2.3"
    plan = dry_run(project, "deploy", environment, "--version", "v1.2.3")
    steps = commands(plan)

    assert "needs: `ssh` on PATH, `scp` on PATH, VM_HOST set, VM_USER set" in plan
    lock = steps[0]
    assert lock.startswith(f"{SSH} 'mkdir -p -m 700 /srv/my-service/backups && cd /srv/my-service")
    assert "flock -n 9" in lock
    assert all(step.startswith((ON_HOST, "scp ")) for step in steps[1:])
    assert_in_order(
        steps,
        [
            "test -f .env",
            "scp -P 22 -o BatchMode=yes -r deploy/vm/compose.yaml deploy/vm/nginx deploy/vm/backup",
            "cat releases.jsonl",
            "docker compose up --detach --wait postgres redis certbot backup",
            "cat nginx/live.conf",
            f"MIGRATE_IMAGE={image}",
            "docker compose pull --policy missing migrate",
            "docker compose exec -T backup /bin/sh /backup/backup.sh now release before-v1.2.3",
            "docker compose run --rm migrate",
            f"WORKER_IMAGE={image}",
            "up --detach --no-deps --wait --wait-timeout 120 worker",
            f"API_<IDLE COLOUR>_IMAGE={image}",
            "up --detach --no-deps --force-recreate --wait --wait-timeout 120 api-<idle colour>",
            "exec -T api-<idle colour> python -c",
            "cp nginx/upstreams/<idle colour>.conf nginx/live.conf.next",
            'exec -T nginx sh -c "nginx -t && nginx -s reload"',
            "cat >> releases.jsonl",
            "docker compose stop api-<live colour>",
        ],
    )
    assert "http://127.0.0.1:8000/health/ready" in steps[position(steps, "python -c")]


@environments
def test_rollback_switches_without_touching_the_database(render: Render, environment: str) -> None:
    project = render(FULL)
    steps = commands(dry_run(project, "rollback", environment))
    image = f"{image_of(project)}:<previous release>"
    assert "flock -n 9" in steps[0]
    assert_in_order(
        steps,
        [
            "cat releases.jsonl",
            "cat nginx/live.conf",
            f"MIGRATE_IMAGE={image}",
            "docker compose pull --policy missing migrate",
            f"WORKER_IMAGE={image}",
            "up --detach --no-deps --wait --wait-timeout 120 worker",
            "up --detach --no-deps --force-recreate --wait --wait-timeout 120 api-<idle colour>",
            'nginx -t && nginx -s reload"',
            "cat >> releases.jsonl",
            "docker compose stop api-<live colour>",
        ],
    )
    assert not [step for step in steps if "backup.sh" in step or "run --rm migrate" in step]


def test_rollback_to_a_named_version(render: Render) -> None:
    project = render(FULL)
    steps = commands(dry_run(project, "rollback", "production", "v1.0.0"))
    position(steps, f"MIGRATE_IMAGE={image_of(project)}:v1.0.0")


@variants
def test_plan_follows_the_features(render: Render, variant: Variant) -> None:
    steps = commands(dry_run(render(variant), "deploy", "staging", "--version", "v1"))
    backing = steps[position(steps, "docker compose up --detach --wait")]
    assert ("redis" in backing) == variant.features.redis
    assert any(step.endswith(" worker'") for step in steps) == variant.features.worker


def test_a_version_that_is_no_image_tag_is_refused(render: Render) -> None:
    result = nox(render(FULL), "deploy", "staging", "--version", "v1;reboot", "--dry-run")
    assert result.returncode != 0
    assert "deploy failed: 'v1;reboot' is not an image tag" in result.stdout
    assert commands(result.stdout) == []


# ---------------------------------------------------------------------------------------------
# Real releases on this machine (VM_HOST=local), with a `docker` that records what it is asked

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$DOCKER_CALLS"
if [ -n "$DOCKER_FAILS" ]; then
  case "$*" in *"$DOCKER_FAILS"*) exit 1 ;; esac
fi
"""
SETTINGS = "ENVIRONMENT=production\nAPI_KEY=0123456789abcdef0123456789abcdef\n"


@dataclass
class Host:
    """A project directory as the vm target leaves it, and a `docker` that logs its calls."""

    project: Path
    directory: Path
    calls: Path
    env: dict[str, str]

    def release(
        self, session: str, *posargs: str, fails: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run `nox -s deploy|rollback -- production ...` against this directory."""
        env = {**self.env, "DOCKER_FAILS": fails}
        return nox(self.project, session, "production", *posargs, env=env)

    def docker(self) -> list[str]:
        """What `docker` was asked, in order."""
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def after(self, *releases: tuple[str, str]) -> None:
        """Leave the directory as deploys of `releases` (version, colour) did, the last serving."""
        live_version, live_colour = releases[-1]
        nginx = self.directory / "nginx"
        shutil.copytree(self.project / "deploy/vm/nginx", nginx, dirs_exist_ok=True)
        shutil.copy(nginx / f"upstreams/{live_colour}.conf", nginx / "live.conf")
        lines = []
        for number, (version, colour) in enumerate(releases, start=1):
            image = f"{self.image}:{version}"
            entry = {
                "number": number,
                "action": "deploy",
                "version": version,
                "artifacts": {"worker": image, "api": image},
                "revision": "0001",
                "previous": number - 1 or None,
                "restores": None,
                "commit": None,
                "time": f"2026-11-0{number}T10:00:00+00:00",
                "by": "someone",
                "details": {"colour": colour},
            }
            lines.append(json.dumps(entry))
        (self.directory / "releases.jsonl").write_text("".join(f"{line}\n" for line in lines))
        slots = {colour: version for version, colour in releases}
        (self.directory / ".env").write_text(
            SETTINGS
            + "".join(f"API_{c.upper()}_IMAGE={self.image}:{v}\n" for c, v in slots.items())
            + f"WORKER_IMAGE={self.image}:{live_version}\n"
            + f"MIGRATE_IMAGE={self.image}:{live_version}\n"
        )

    @property
    def image(self) -> str:
        """The image repository releases use."""
        return image_of(self.project)

    def records(self) -> list[dict[str, Any]]:
        """releases.jsonl, oldest first."""
        return [
            json.loads(line)
            for line in (self.directory / "releases.jsonl").read_text().splitlines()
        ]

    def settings(self) -> dict[str, str]:
        """The variables of .env."""
        lines = (self.directory / ".env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)

    def live_colour(self) -> str:
        """The colour nginx/live.conf sends traffic to."""
        match = re.search(r"\bapi-(\w+):", (self.directory / "nginx/live.conf").read_text())
        assert match
        return match.group(1)


@pytest.fixture
def host(render: Render, tmp_path: Path) -> Host:
    """An empty project directory with its .env, and the fake `docker` first on PATH."""
    return make_host(render(FULL), tmp_path)


def make_host(project: Path, tmp_path: Path) -> Host:
    """The host of `project`: an empty directory with its .env; the fake `docker` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    directory = tmp_path / "srv"
    directory.mkdir()
    (directory / ".env").write_text(SETTINGS)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{BARE_ENV['PATH']}",
        "VM_HOST": "local",
        "VM_DIR": str(directory),
        "VM_DRAIN_SECONDS": "0",
        "DOCKER_CALLS": str(tmp_path / "docker-calls"),
    }
    return Host(project, directory, tmp_path / "docker-calls", env)


def test_first_release_goes_to_blue(host: Host) -> None:
    result = host.release("deploy", "--version", "v1")
    assert result.returncode == 0, result.stdout + result.stderr

    image = f"{host.image}:v1"
    assert host.live_colour() == "blue"
    assert host.settings() == {
        "ENVIRONMENT": "production",
        "API_KEY": "0123456789abcdef0123456789abcdef",
        "API_BLUE_IMAGE": image,
        "API_GREEN_IMAGE": image,
        "WORKER_IMAGE": image,
        "MIGRATE_IMAGE": image,
    }
    assert stat.S_IMODE((host.directory / ".env").stat().st_mode) == 0o600
    [record] = host.records()
    assert {k: record[k] for k in ("number", "action", "version", "revision", "previous")} == {
        "number": 1,
        "action": "deploy",
        "version": "v1",
        "revision": "0001",
        "previous": None,
    }
    assert record["artifacts"] == {"worker": image, "api": image}
    assert record["details"] == {"colour": "blue"}
    assert (host.directory / "compose.yaml").read_text() == (
        host.project / "deploy/vm/compose.yaml"
    ).read_text()
    assert "compose exec -T backup /bin/sh /backup/backup.sh now release before-v1" in host.docker()
    assert not [call for call in host.docker() if call.startswith("compose stop")]


def test_release_switches_the_worker_then_the_idle_colour_then_stops_the_old_one(
    host: Host,
) -> None:
    host.after(("v1", "blue"))
    result = host.release("deploy", "--version", "v2")
    assert result.returncode == 0, result.stdout + result.stderr

    assert host.live_colour() == "green"
    settings = host.settings()
    assert settings["API_BLUE_IMAGE"] == f"{host.image}:v1"
    assert settings["API_GREEN_IMAGE"] == settings["WORKER_IMAGE"] == f"{host.image}:v2"
    records = host.records()
    assert [(r["version"], r["previous"]) for r in records] == [("v1", None), ("v2", 1)]
    calls = host.docker()
    assert_in_order(
        calls,
        [
            "compose run --rm migrate",
            "--wait-timeout 120 worker",
            "--wait-timeout 120 api-green",
            "nginx -s reload",
            "compose stop api-blue",
        ],
    )


def test_unhealthy_release_puts_the_worker_back_and_the_live_colour_keeps_serving(
    host: Host,
) -> None:
    host.after(("v1", "blue"))
    before = (host.directory / "releases.jsonl").read_text()
    result = host.release("deploy", "--version", "v2", fails="--wait-timeout 120 api-green")

    assert result.returncode != 0
    assert (
        "deploy failed: api-green did not become healthy with v2; v1 serves as before"
    ) in result.stdout
    assert host.live_colour() == "blue"
    assert (host.directory / "releases.jsonl").read_text() == before
    assert host.settings()["WORKER_IMAGE"] == f"{host.image}:v1"
    calls = host.docker()
    assert calls[-2:] == [
        "compose stop api-green",
        "compose up --detach --no-deps --wait --wait-timeout 120 worker",
    ]
    assert not [call for call in calls if "nginx" in call]


def test_every_service_switches_with_the_api_in_one_release(render: Render, tmp_path: Path) -> None:
    host = make_host(render(SERVICES), tmp_path)
    host.after(("v1", "blue"))  # before the services were added
    result = host.release("deploy", "--version", "v2")
    assert result.returncode == 0, result.stdout + result.stderr

    v1, v2 = f"{host.image}:v1", f"{host.image}:v2"
    settings = host.settings()
    for component in ("API", "SEARCH", "MEMORY"):
        assert settings[f"{component}_GREEN_IMAGE"] == v2
    # The blue slots of services new to the host hold a placeholder; they never ran.
    assert settings["API_BLUE_IMAGE"] == settings["SEARCH_BLUE_IMAGE"] == v1
    assert host.live_colour() == "green"
    assert host.records()[-1]["artifacts"] == dict.fromkeys(
        ("worker", "memory", "search", "api"), v2
    )
    calls = host.docker()
    # The slots of the idle colour start together, the services before the API that calls them;
    # one reload sends traffic to all of them; the old colour stops as a whole.
    assert_in_order(
        calls,
        [
            "compose run --rm migrate",
            "--wait-timeout 120 worker",
            "--wait-timeout 120 memory-green search-green api-green",
            "exec -T memory-green",
            "exec -T search-green",
            "exec -T api-green",
            "nginx -s reload",
            "compose stop memory-blue search-blue api-blue",
        ],
    )
    assert len([call for call in calls if "nginx -s reload" in call]) == 1

    # A rollback to a release without the services keeps them on what serves (the older API
    # never calls them); everything else goes back.
    result = host.release("rollback")
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.live_colour() == "blue"
    settings = host.settings()
    assert settings["API_BLUE_IMAGE"] == settings["WORKER_IMAGE"] == v1
    assert settings["SEARCH_BLUE_IMAGE"] == settings["MEMORY_BLUE_IMAGE"] == v2
    assert host.records()[-1]["artifacts"] == {"worker": v1, "memory": v2, "search": v2, "api": v1}


def test_a_service_that_never_becomes_healthy_stops_the_whole_colour(
    render: Render, tmp_path: Path
) -> None:
    host = make_host(render(SERVICES), tmp_path)
    host.after(("v1", "blue"))
    before = (host.directory / "releases.jsonl").read_text()
    result = host.release("deploy", "--version", "v2", fails="exec -T search-green")

    assert result.returncode != 0
    assert "search-green is not ready with v2; v1 serves as before" in result.stdout
    assert (host.directory / "releases.jsonl").read_text() == before
    assert host.live_colour() == "blue"
    assert host.docker()[-2:] == [
        "compose stop memory-green search-green api-green",
        "compose up --detach --no-deps --wait --wait-timeout 120 worker",
    ]


def test_two_rollbacks_walk_back_two_releases_and_a_third_refuses(host: Host) -> None:
    host.after(("v1", "blue"), ("v2", "green"), ("v3", "blue"))
    for expected, colour in (("v2", "green"), ("v1", "blue")):
        result = host.release("rollback")
        assert result.returncode == 0, result.stdout + result.stderr
        assert host.live_colour() == colour
        assert host.settings()[f"API_{colour.upper()}_IMAGE"] == f"{host.image}:{expected}"
        assert host.settings()["WORKER_IMAGE"] == f"{host.image}:{expected}"
    third = host.release("rollback")
    assert third.returncode != 0
    assert "v1 is the first release of production: there is no earlier release" in third.stdout
    assert [(r["action"], r["version"], r["restores"]) for r in host.records()[3:]] == [
        ("rollback", "v2", 2),
        ("rollback", "v1", 1),
    ]
    calls = host.docker()
    assert not [call for call in calls if "backup.sh" in call or "run --rm migrate" in call]


def test_a_deploy_after_a_rollback_replaces_it_and_rolls_back_past_the_rolled_back(
    host: Host,
) -> None:
    host.after(("v1", "blue"), ("v2", "green"))
    assert host.release("rollback").returncode == 0  # v2 -> v1
    assert host.release("deploy", "--version", "v3").returncode == 0
    back = host.release("rollback")
    assert back.returncode == 0, back.stdout
    # v3 replaced v1 (v2 had been rolled back): going back from v3 lands on v1, not v2.
    assert host.records()[-1]["version"] == "v1"


@pytest.mark.parametrize(
    ("version", "failure"),
    [
        ("v9", "v9 was never released to production; its history knows v2, v1."),
        ("v2", "v2 is what production runs already."),
    ],
)
def test_rollback_refuses_what_it_cannot_go_back_to(host: Host, version: str, failure: str) -> None:
    host.after(("v1", "blue"), ("v2", "green"))
    result = host.release("rollback", version)
    assert result.returncode != 0
    assert f"rollback failed: {failure}" in result.stdout
    assert not [call for call in host.docker() if "stop" in call or "--wait-timeout" in call]


def test_release_without_the_env_file_stops_before_any_change(host: Host) -> None:
    (host.directory / ".env").unlink()
    result = host.release("deploy", "--version", "v1")
    assert result.returncode != 0
    assert f"deploy failed: {host.directory}/.env is missing" in result.stdout
    assert not (host.directory / "compose.yaml").exists()
    assert host.docker() == []


def test_a_release_under_way_makes_another_one_refuse(host: Host) -> None:
    host.after(("v1", "blue"))
    (host.directory / ".release.holder").write_text("ci run 42, deploy of v2 since 10:00\n")
    with (host.directory / ".release.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as the release under way holds it
        result = host.release("deploy", "--version", "v3")
    assert result.returncode != 0
    assert (
        "deploy failed: production is being released by ci run 42, deploy of v2 since 10:00."
    ) in result.stdout
    assert host.docker() == []
    # Once that release ends, its lock goes with it.
    assert host.release("deploy", "--version", "v3").returncode == 0


def test_an_interrupted_switch_is_put_right_before_anything_else(host: Host) -> None:
    # A release was killed after writing live.conf (green) and before nginx served it.
    host.after(("v1", "blue"))
    shutil.copy(host.directory / "nginx/upstreams/green.conf", host.directory / "nginx/live.conf")
    result = host.release("deploy", "--version", "v2")
    assert result.returncode == 0, result.stdout
    assert "nginx/live.conf names green, but releases.jsonl says blue serves" in result.stdout
    calls = host.docker()
    # nginx serves blue again before green, the idle colour, is recreated for v2.
    assert position(calls, "nginx -s reload") < position(calls, "api-green")
    assert host.live_colour() == "green"
    assert host.records()[-1]["details"] == {"colour": "green"}


def test_a_history_written_by_slipway_0_1_is_read(host: Host) -> None:
    host.after(("v1", "blue"))
    old = [
        {
            "time": "t1",
            "action": "deploy",
            "version": "v1",
            "image": f"{host.image}:v1",
            "colour": "blue",
            "revision": "0001",
        },
        {
            "time": "t2",
            "action": "deploy",
            "version": "v2",
            "image": f"{host.image}:v2",
            "colour": "green",
            "revision": "0001",
        },
    ]
    (host.directory / "releases.jsonl").write_text("".join(json.dumps(o) + "\n" for o in old))
    shutil.copy(host.directory / "nginx/upstreams/green.conf", host.directory / "nginx/live.conf")
    result = host.release("rollback")
    assert result.returncode == 0, result.stdout
    assert host.live_colour() == "blue"
    assert host.records()[-1]["action"] == "rollback"
    assert host.records()[-1]["version"] == "v1"


# ---------------------------------------------------------------------------------------------
# The host's compose file, as Compose reads it

SLOTS = {
    "API_BLUE_IMAGE": "registry.example/app:v1",
    "API_GREEN_IMAGE": "registry.example/app:v2",
    "WORKER_IMAGE": "registry.example/app:v2",
    "MIGRATE_IMAGE": "registry.example/app:v3",
}


def slots_of(variant: Variant) -> dict[str, str]:
    """The images of SLOTS, and each service's slots like the API's."""
    images = dict(SLOTS)
    for service in variant.services:
        for colour in ("BLUE", "GREEN"):
            images[f"{service.upper()}_{colour}_IMAGE"] = SLOTS[f"API_{colour}_IMAGE"]
    return images


SECRETS = {"POSTGRES_PASSWORD": "0123456789abcdef"}


def tool(name: str) -> str:
    """The path of a validator; the validate dependency group installs them all."""
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: run the tests with `nox -s validate`"
    return path


def compose_config(
    project: Path, tmp_path: Path, env: dict[str, str], *profiles: str
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` in a copy of deploy/vm with an .env, as on the host, with the
    services of `profiles` too."""
    directory = tmp_path / "host"
    shutil.copytree(project / "deploy/vm", directory, dirs_exist_ok=True)
    (directory / ".env").write_text(SETTINGS)
    chosen = [f"--profile={profile}" for profile in profiles]
    return subprocess.run(
        [tool("docker-compose"), *chosen, "config", "--format", "json"],
        cwd=directory,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.validate
@variants
def test_production_compose_file_is_valid(render: Render, variant: Variant, tmp_path: Path) -> None:
    project = render(variant)
    schema = ["--builtin-schema", "vendor.compose-spec"]
    compose_file = str(project / "deploy/vm/compose.yaml")
    checked = subprocess.run(
        [tool("check-jsonschema"), *schema, compose_file], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    ports = {"HTTP_PORT": "127.0.0.1:18080", "HTTPS_PORT": "127.0.0.1:18443"}
    result = compose_config(project, tmp_path, {**slots_of(variant), **SECRETS, **ports})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]

    expected = {
        "nginx",
        "bootstrap-cert",
        "certbot",
        "postgres",
        "backup",
        "migrate",
        "api-blue",
        "api-green",
    }
    expected |= {"redis"} if variant.features.redis else set()
    expected |= {"worker"} if variant.features.worker else set()
    expected |= {f"{name}-{colour}" for name in variant.services for colour in ("blue", "green")}
    monitoring = {"prometheus", "alertmanager", "postgres-exporter"}
    monitoring |= {"redis-exporter"} if variant.features.redis else set()
    expected |= monitoring if variant.monitored else set()
    assert set(services) == expected
    assert not [name for name, service in services.items() if "build" in service]
    assert services["api-blue"]["image"] == SLOTS["API_BLUE_IMAGE"]
    assert services["api-green"]["image"] == SLOTS["API_GREEN_IMAGE"]
    assert services["migrate"]["image"] == SLOTS["MIGRATE_IMAGE"]
    if variant.features.worker:
        assert services["worker"]["image"] == SLOTS["WORKER_IMAGE"]
    # Each service runs the image's `serve NAME` in slots like the API's, which calls the
    # service's slot of its own colour.
    for name in variant.services:
        for colour in ("blue", "green"):
            slot = services[f"{name}-{colour}"]
            assert slot["image"] == services[f"api-{colour}"]["image"]
            assert slot["command"] == ["my-service", "serve", name]
            url = services[f"api-{colour}"]["environment"][f"{name.upper()}_URL"]
            assert url == f"http://{name}-{colour}:8000"
            assert slot["environment"]["PORT"] == "8000"
    # Only nginx is reachable from outside, on the addresses and ports it was given; Prometheus
    # and Alertmanager on the host's loopback.
    published = {
        name: {(port["host_ip"], port["published"], port["target"]) for port in service["ports"]}
        for name, service in services.items()
        if "ports" in service
    }
    assert published.pop("nginx") == {("127.0.0.1", "18080", 80), ("127.0.0.1", "18443", 443)}
    loopback = {"prometheus": {("127.0.0.1", "9090", 9090)}}
    loopback |= {"alertmanager": {("127.0.0.1", "9093", 9093)}}
    assert published == (loopback if variant.monitored else {})
    for name, service in services.items():
        assert service["logging"]["options"] == {"max-size": "10m", "max-file": "5"}, name
        one_shot = name in {"migrate", "bootstrap-cert"}
        assert service["restart"] == ("no" if one_shot else "unless-stopped"), name
        # CPU and memory limits for every service: a leaking one cannot starve the others.
        limits = service["deploy"]["resources"]["limits"]
        assert int(limits["memory"]) > 0, name
        assert "cpus" in limits or name == "postgres", name
    # The off-host copy runs only when asked for (compose profile `offsite`).
    offsite = compose_config(project, tmp_path, {**slots_of(variant), **SECRETS}, "offsite")
    assert offsite.returncode == 0, offsite.stderr
    copier = json.loads(offsite.stdout)["services"]["backup-offsite"]
    assert copier["volumes"][0]["read_only"] is True
    assert copier["environment"]["AWS_SECRET_ACCESS_KEY"] == ""
    database = "postgresql://my_service:0123456789abcdef@postgres:5432/my_service"
    for name in ("api-blue", "api-green", "migrate"):
        assert services[name]["environment"]["DATABASE_URL"] == database
        assert services[name]["environment"]["ENVIRONMENT"] == "production"  # from .env
    # The API's healthcheck is the image's HEALTHCHECK; the worker's is its own.
    assert "healthcheck" not in services["api-blue"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    if variant.features.worker:
        test = services["worker"]["healthcheck"]["test"]
        assert test == ["CMD", "my-service", "healthcheck", "--worker"]


@pytest.mark.validate
@pytest.mark.parametrize("variant", [FULL, SERVICES], ids=lambda variant: variant.id)
def test_prometheus_and_alertmanager_accept_their_configuration(
    render: Render, variant: Variant, tmp_path: Path
) -> None:
    project = render(variant)
    # Laid out as a release copies them to the host, with the colour that serves chosen.
    prometheus = tmp_path / "prometheus"
    shutil.copytree(project / "deploy/vm/prometheus", prometheus)
    shutil.copy(prometheus / "green.yml", prometheus / "live.yml")
    mounts = {prometheus: "/etc/prometheus", project / "monitoring": "/monitoring"}
    checked = containers.run_tool(
        containers.PROMETHEUS_IMAGE,
        "/bin/promtool",
        "check",
        "config",
        "/etc/prometheus/prometheus.yml",
        mounts=mounts,
    )
    assert "SUCCESS: 1 rule files found" in checked, checked
    targets = yaml.safe_load((prometheus / "live.yml").read_text())
    assert {group["labels"]["job"]: group["targets"] for group in targets} == {
        component: [f"{component}-green:9000"] for component in ("api", *variant.services)
    }
    containers.run_tool(
        containers.ALERTMANAGER_IMAGE,
        "/bin/amtool",
        "check-config",
        "/etc/alertmanager/alertmanager.yml",
        mounts={project / "deploy/vm/alertmanager": "/etc/alertmanager"},
    )


@pytest.mark.validate
def test_grafana_runs_on_request_on_loopback_with_the_projects_dashboards(
    render: Render, tmp_path: Path
) -> None:
    project = render(FULL)
    env = {**slots_of(FULL), **SECRETS, "COMPOSE_PROFILES": "grafana"}
    result = compose_config(project, tmp_path, env)
    assert result.returncode == 0, result.stderr
    grafana = json.loads(result.stdout)["services"]["grafana"]
    published = [(port["host_ip"], port["published"], port["target"]) for port in grafana["ports"]]
    assert published == [("127.0.0.1", "3000", 3000)]
    mounts = {v["target"]: v["source"] for v in grafana["volumes"] if v["type"] == "bind"}
    host = tmp_path / "host"
    assert mounts == {
        "/etc/grafana/provisioning": str(host / "grafana"),
        "/monitoring": str(host / "monitoring"),
    }
    provisioning = project / "deploy/vm/grafana"
    [source] = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    [provider] = yaml.safe_load((provisioning / "dashboards/provider.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/monitoring"
    assert (project / "monitoring/dashboard.json").is_file()


@pytest.mark.validate
def test_production_compose_file_needs_the_database_password(
    render: Render, tmp_path: Path
) -> None:
    result = compose_config(render(FULL), tmp_path, SLOTS)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


# ---------------------------------------------------------------------------------------------
# nginx: what the configuration states, then nginx itself in front of stand-ins for the colours

NGINX = "deploy/vm/nginx"
# The headers the API sets on its responses, HSTS included (it sees X-Forwarded-Proto: https).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=63072000",
}


def nginx_directives(project: Path, name: str, files: str = "**/*.conf") -> list[str]:
    """The arguments of every `name` directive in these files of the project's nginx directory."""
    found = []
    for conf in sorted((project / NGINX).glob(files)):
        text = re.sub(r"#.*", "", conf.read_text())
        found += re.findall(rf"(?:^|[;{{}}\s]){name}\s+([^;]+);", text)
    return found


def test_nginx_proxies_the_api_port_only_with_the_apis_body_limit(render: Render) -> None:
    project = render(FULL)
    assert nginx_directives(project, "proxy_pass") == ["http://$live_api"]
    # The live colour is the API's port on a slot; the metrics port is named nowhere.
    slots = nginx_directives(project, "default", "upstreams/*.conf")
    assert sorted(slots) == ["api-blue:8000", "api-green:8000"]
    megabytes = QUESTIONS["max_body_mib"]["default"]
    assert nginx_directives(project, "client_max_body_size") == [f"{megabytes}m"]
    assert nginx_directives(project, "proxy_buffering") == ["off"]


def test_the_slots_trust_forwarded_headers_from_docker_networks_only(render: Render) -> None:
    services = yaml.safe_load((render(FULL) / "deploy/vm/compose.yaml").read_text())["services"]
    for slot in ("api-blue", "api-green"):
        trusted = services[slot]["environment"]["FORWARDED_ALLOW_IPS"].split(",")
        networks = [ipaddress.ip_network(network) for network in trusted]
        assert all(network.is_private for network in networks), trusted  # not `*`
        assert "ports" not in services[slot]  # only nginx, on the project's network, reaches them


# The API's stand-in: each colour answers with what it was sent, sets the API's security headers,
# streams server-sent events without asking nginx not to buffer them, counts the bytes of a body,
# and serves "metrics" on the metrics port, which nginx must never reach.
STAND_IN = r"""
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COLOUR = sys.argv[1]
SECURITY = dict(line.split(": ", 1) for line in sys.argv[2].splitlines())
FORWARDED = ["X-Request-ID", "X-Forwarded-For", "X-Forwarded-Proto", "Host", "Upgrade"]
FORWARDED.append("Connection")


class API(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def start(self, content_type, length=None):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        for name, value in SECURITY.items():
            self.send_header(name, value)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def answer(self, text, content_type="text/plain"):
        body = text.encode()
        self.start(content_type, len(body))
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/events":
            self.start("text/event-stream")
            for number in range(3):
                event = f"data: tick {number}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(1)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/big":
            self.answer('{"padding": "%s"}' % ("x" * 2000), "application/json")
        else:
            self.answer("|".join([COLOUR] + [self.headers.get(h, "") for h in FORWARDED]))

    def do_POST(self):
        length, received = int(self.headers.get("Content-Length", 0)), 0
        while received < length:
            received += len(self.rfile.read(min(65536, length - received)))
        self.answer(str(received))


class Metrics(API):
    def do_GET(self):
        self.answer(f"metrics of {COLOUR}")


metrics = ThreadingHTTPServer(("", 9000), Metrics)
threading.Thread(target=metrics.serve_forever, daemon=True).start()
ThreadingHTTPServer(("", 8000), API).serve_forever()
"""


@dataclass
class Answer:
    """An HTTP response as the test reads it."""

    status: int
    headers: http.client.HTTPMessage
    body: str

    def once(self, *names: str) -> None:
        """Each header is in the response exactly once."""
        for name in names:
            assert len(self.headers.get_all(name) or []) == 1, (name, self.headers.items())

    def nginx_error(self, status: int, request_id: str) -> None:
        """An error nginx answered itself, in the API's form."""
        assert self.status == status, self.body
        assert self.headers["Content-Type"] == "application/json"
        assert json.loads(self.body)["request_id"] == request_id
        self.once("X-Request-ID", *SECURITY_HEADERS)
        assert self.headers["X-Request-ID"] == request_id


def connect(port: int, *, tls: bool = True) -> http.client.HTTPConnection:
    """A connection to nginx on the loopback; the test certificate is self-signed."""
    if not tls:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)


def ask(
    port: int,
    path: str,
    *,
    tls: bool = True,
    headers: dict[str, str] | None = None,
    times: int = 1,
    method: str = "GET",
    body: bytes | None = None,
) -> list[Answer]:
    """Send the same request `times` times over one connection, as fast as nginx answers."""
    connection = connect(port, tls=tls)
    answers = []
    try:
        for _ in range(times):
            connection.request(
                method, path, body=body, headers={"Host": "api.example.com", **(headers or {})}
            )
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            answers.append(Answer(response.status, response.headers, text))
    finally:
        connection.close()
    return answers


def announce(port: int, path: str, length: int, request_id: str) -> Answer:
    """Send only the headers of a POST whose body would be `length` bytes; read the answer."""
    connection = connect(port)
    try:
        connection.putrequest("POST", path, skip_host=True)
        for name, value in (
            ("Host", "api.example.com"),
            ("Content-Length", str(length)),
            ("X-Request-ID", request_id),
        ):
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read().decode())
    finally:
        connection.close()


def stream(port: int, path: str) -> tuple[list[tuple[float, str]], float]:
    """Each line of a streamed response with when it arrived, and when the response ended."""
    connection = connect(port)
    try:
        started = time.monotonic()
        connection.request("GET", path, headers={"Host": "api.example.com"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        lines = []
        while line := response.readline():
            lines.append((time.monotonic() - started, line.decode().rstrip("\n")))
        return lines, time.monotonic() - started
    finally:
        connection.close()


def routes(port: int) -> dict[str, str]:
    """The slot that answers each path: a service's own, one that only starts like them, `/`."""
    paths = ["/"]
    for service in SERVICES.services:
        paths += [f"/{service}", f"/{service}/hello", f"/{service}x/"]
    return {path: ask(port, path)[0].body.split("|")[0] for path in paths}


def python_image(project: Path) -> str:
    """The Python image for the stand-ins: CI's local one, else the Dockerfile's default."""
    if value := os.environ.get("PYTHON_IMAGE"):
        return value
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (project / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile names no default PYTHON_IMAGE"
    return match.group(1)


def stand_in(lab: containers.Lab, image: str, slot: str) -> Container:
    """Start a slot's stand-in (`api-blue`) on the app port and the metrics port."""
    security = "\n".join(f"{name}: {value}" for name, value in SECURITY_HEADERS.items())
    return lab.run(image, slot, command=["python", "-c", STAND_IN, slot, security])


@pytest.mark.validate
def test_nginx_serves_the_live_colour_with_tls(render: Render, tmp_path: Path) -> None:
    project = render(SERVICES)
    image = containers.base_image("NGINX_IMAGE", project / "deploy/vm")
    python = python_image(project)
    openssl = shutil.which("openssl")
    assert openssl, "the nginx test makes its certificate with openssl"
    certificate = tmp_path / "live-api"
    certificate.mkdir()
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "1"),
            *("-subj", "/CN=api.example.com", "-keyout", str(certificate / "privkey.pem")),
            *("-out", str(certificate / "fullchain.pem")),
        ],
        check=True,
        capture_output=True,
    )
    certificate.chmod(0o755)
    (certificate / "privkey.pem").chmod(0o644)  # the container's nginx reads it as another user
    webroot = tmp_path / "webroot"
    (webroot / ".well-known/acme-challenge").mkdir(parents=True)
    (webroot / ".well-known/acme-challenge/token-123").write_text("token-123.thumbprint")
    conf = tmp_path / "nginx"
    shutil.copytree(project / NGINX, conf)
    shutil.copy(conf / "upstreams/blue.conf", conf / "live.conf")
    compose = yaml.safe_load((project / "deploy/vm/compose.yaml").read_text())
    # The command compose runs: the reload loop around nginx (`$$` is compose's escape for `$`).
    command = [part.replace("$$", "$") for part in compose["services"]["nginx"]["command"]]

    with containers.lab("slipway-vmh") as lab:
        blue = stand_in(lab, python, "api-blue")
        for service in SERVICES.services:
            stand_in(lab, python, f"{service}-blue")
        nginx = lab.run(
            image,
            "nginx",
            command=command,
            volumes={
                str(conf): {"bind": "/etc/nginx/conf.d", "mode": "ro"},
                str(certificate): {"bind": "/etc/letsencrypt/live/api", "mode": "ro"},
                str(webroot): {"bind": "/var/www/certbot", "mode": "ro"},
            },
            ports={"80/tcp": ("127.0.0.1", None), "443/tcp": ("127.0.0.1", None)},
        )
        exit_code, output = nginx.exec_run(["nginx", "-t"])
        assert exit_code == 0, output.decode()
        http_port = containers.published_port(nginx, 80)
        https_port = containers.published_port(nginx, 443)
        every_slot = ["/", *(f"/{service}/hello" for service in SERVICES.services)]
        containers.eventually(lambda: all(ask(https_port, p)[0].status == 200 for p in every_slot))

        [challenge] = ask(http_port, "/.well-known/acme-challenge/token-123", tls=False)
        assert (challenge.status, challenge.body) == (200, "token-123.thumbprint")
        [redirect] = ask(http_port, "/documents?page=2", tls=False)
        assert redirect.status == 301
        assert redirect.headers["Location"] == "https://api.example.com/documents?page=2"

        forged = {"X-Request-ID": "req-1", "X-Forwarded-For": "203.0.113.9"}
        [answer] = ask(https_port, "/documents", headers=forged)
        colour, request_id, forwarded_for, proto, host, upgrade, connection = answer.body.split("|")
        assert (colour, request_id, proto) == ("api-blue", "req-1", "https")
        assert host == "api.example.com"
        assert forwarded_for != "203.0.113.9"  # nginx says who connected; clients cannot
        assert (upgrade, connection) == ("", "")  # no upgrade asked for, none passed on
        # The API's security headers, each once: nginx adds none of its own but HSTS, whose
        # copy from the API it drops.
        answer.once(*SECURITY_HEADERS)
        assert {name: answer.headers[name] for name in SECURITY_HEADERS} == SECURITY_HEADERS

        [generated] = ask(https_port, "/")
        assert re.fullmatch(r"[0-9a-f]{32}", generated.body.split("|")[1])
        # A request id that is no plain token is not passed on (nor quoted in nginx's errors).
        [odd] = ask(https_port, "/", headers={"X-Request-ID": 'a", "b'})
        assert re.fullmatch(r"[0-9a-f]{32}", odd.body.split("|")[1])
        upgrade_headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
        [upgraded] = ask(https_port, "/socket", headers=upgrade_headers)
        assert upgraded.body.endswith("|websocket|upgrade")
        # Each service's routes go to its slot of the live colour, the rest to the API.
        assert routes(https_port) == {
            path: f"{service}-blue"
            for service in SERVICES.services
            for path in (f"/{service}", f"/{service}/hello")
        } | {"/": "api-blue", **{f"/{service}x/": "api-blue" for service in SERVICES.services}}
        [big] = ask(https_port, "/big", headers={"Accept-Encoding": "gzip"})
        assert big.headers["Content-Encoding"] == "gzip"

        # Server-sent events reach the client as the API sends them, one a second, not at the end.
        lines, ended = stream(https_port, "/events")
        events = [(at, line) for at, line in lines if line]
        assert [line for _, line in events] == [f"data: tick {n}" for n in range(3)]
        assert ended - events[0][0] > 1.5, lines

        # Bodies up to the API's limit pass; one byte more, and nginx answers 413 itself.
        limit = QUESTIONS["max_body_mib"]["default"] * 1024 * 1024
        [accepted] = ask(https_port, "/documents", method="POST", body=b"x" * limit)
        assert (accepted.status, accepted.body) == (200, str(limit))
        too_large = announce(https_port, "/documents", limit + 1, "req-413")
        too_large.nginx_error(413, "req-413")

        # The metrics port serves on the project's network, and nginx never sends anything there.
        exit_code, output = nginx.exec_run(["nginx", "-T"])
        assert exit_code == 0
        assert ":9000" not in output.decode()
        [metrics] = ask(https_port, "/metrics")
        [by_host] = ask(https_port, "/metrics", headers={"Host": "api-blue:9000"})
        [absolute] = ask(https_port, "http://api-blue:9000/metrics")
        for answer in (metrics, by_host, absolute):
            assert not answer.body.startswith("metrics of"), answer.body
        reach = "import urllib.request as u; print(u.urlopen('http://api-blue:9000/').read())"
        exit_code, output = blue.exec_run(["python", "-c", reach])
        assert (exit_code, b"metrics of api-blue" in output) == (0, True), output.decode()

        # Rate limiting: 200 requests at once exceed the burst of 40 on top of 20 a second.
        flood = ask(https_port, "/", times=200, headers={"X-Request-ID": "req-429"})
        statuses = [answer.status for answer in flood]
        assert (statuses[0], statuses[-1], set(statuses)) == (200, 429, {200, 429})
        flood[-1].nginx_error(429, "req-429")

        # The switch: nginx loads a live.conf naming green while green is still down (only the
        # deploy's health gate decides when to switch); meanwhile nginx answers 502 itself. It
        # serves green once green is up.
        shutil.copy(conf / "upstreams/green.conf", conf / "live.conf")
        exit_code, output = nginx.exec_run(["sh", "-c", "nginx -t && nginx -s reload"])
        assert exit_code == 0, output.decode()

        def unavailable() -> Answer | None:
            [answer] = ask(https_port, "/", headers={"X-Request-ID": "req-502"})
            return answer if answer.status == 502 else None

        down = containers.eventually(unavailable, timeout=15)
        down.nginx_error(502, "req-502")
        for slot in ("api-green", *(f"{service}-green" for service in SERVICES.services)):
            stand_in(lab, python, slot)
        exit_code, output = nginx.exec_run(["sh", "-c", "nginx -t && nginx -s reload"])
        assert exit_code == 0, output.decode()
        containers.eventually(lambda: all(ask(https_port, p)[0].status == 200 for p in every_slot))
        assert routes(https_port) == {
            path: f"{service}-green"
            for service in SERVICES.services
            for path in (f"/{service}", f"/{service}/hello")
        } | {"/": "api-green", **{f"/{service}x/": "api-green" for service in SERVICES.services}}
