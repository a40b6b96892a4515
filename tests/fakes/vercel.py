"""Vercel, as the `vercel` CLI shows it to a release, with the lock in the database and the worker.

The state's "vercel" part holds the project's deployments (each with its target, metadata and the
artifact built from the export it was uploaded from), its aliases (domain -> deployment), and its
activity: every change of what a domain serves, as Vercel's project activity lists promotions and
alias changes. `vercel build` writes the function's .vc-config.json, which a release labels with
IMAGE_TAG before the upload reads it. `nox -s migrate` migrates the fake database with the
checkout's `migrate` command. `psql`, holding the release's advisory lock, is a flock on a file
of the platform held until psql's input ends, its holder named by PGAPPNAME as PostgreSQL keeps an
application_name. The worker's Modal is tests/fakes/modal.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import Fakes, ReleaseKilled, Reply, State, artifact, migrate, option
from . import modal as worker

ENVIRONMENT = "staging"
PROJECT = "my-service"
STAGING_DOMAIN = f"{PROJECT}-staging.vercel.app"
PRODUCTION_DOMAIN = f"{PROJECT}.vercel.app"
CREDENTIALS = {
    "VERCEL_TOKEN": "vercel-token-0123456789",
    "VERCEL_ORG_ID": "team_test",
    "VERCEL_PROJECT_ID": "prj_test",
    "DIRECT_DATABASE_URL": "postgresql://migrator:direct-secret@db.example.com:5432/postgres",
    **worker.TOKENS,
}
FUNCTION = ".vercel/output/functions/index.func/.vc-config.json"
PAGE = 20  # deployments `vercel list` prints at once


def vercel_state(state: State) -> dict[str, Any]:
    """The project's deployments, aliases and activity."""
    found: dict[str, Any] = state.setdefault(
        "vercel", {"deployments": [], "aliases": {}, "activity": []}
    )
    return found


def find(state: State, name: str) -> dict[str, Any] | None:
    """The deployment at a URL (with or without https://), an id, or a domain aliased to one."""
    project = vercel_state(state)
    name = name.removeprefix("https://")
    name = project["aliases"].get(name, name)
    return next((d for d in project["deployments"] if name in (d["url"], d["id"])), None)


def shown(deployment: dict[str, Any], state: State) -> dict[str, Any]:
    """A deployment as Vercel's API returns it (the fake's artifact is not part of it)."""
    aliases = [a for a, url in vercel_state(state)["aliases"].items() if url == deployment["url"]]
    return {k: v for k, v in deployment.items() if k != "artifact"} | {"alias": aliases}


def served(state: State, domain: str = STAGING_DOMAIN) -> dict[str, Any] | None:
    """The artifact of the deployment a domain serves."""
    deployment = find(state, domain) if domain in vercel_state(state)["aliases"] else None
    return deployment["artifact"] if deployment else None


# ---------------------------------------------------------------------------------------------
# The tools


def handle(state: State, tool: str, args: list[str], stdin: str) -> Reply:
    """`vercel`, `nox -s migrate`, and the worker's `modal` and `uv`."""
    if tool in ("modal", "uv"):
        return worker.handle(state, tool, args, stdin)
    if tool == "nox" and args == ["-s", "migrate"]:
        return nox_migrate(state)
    if tool == "vercel" and args:
        command = {
            "pull": pull,
            "build": build,
            "deploy": deploy,
            "api": api,
            "list": list_deployments,
            "promote": promote,
            "alias": alias,
        }.get(args[0])
        if command is not None:
            return command(state, args[1:])
    return Reply(stderr=f"fake {tool}: unsupported call: {' '.join(args)}\n", code=99)


def nox_migrate(state: State) -> Reply:
    """The checkout's migrations, over the database URL the session is given."""
    if os.environ.get("DATABASE_URL") != CREDENTIALS["DIRECT_DATABASE_URL"]:
        return Reply(stderr="could not connect: migrations need the direct connection\n", code=1)
    checkout = Path.cwd()
    name = tomllib.loads((checkout / "pyproject.toml").read_text())["project"]["name"]
    code, said = migrate(state, artifact(checkout, "migrate"), f"{name} migrate")
    return Reply(f"{said}\n") if code == 0 else Reply(stderr=f"{said}\n", code=code)


def directory(args: list[str]) -> Path:
    return Path.cwd() / (option(args, "--cwd") or ".")


def pull(state: State, args: list[str]) -> Reply:
    if "--yes" not in args or option(args, "--environment") not in ("preview", "production"):
        return Reply(stderr="Error: vercel pull needs --yes and --environment\n", code=1)
    settings = directory(args) / ".vercel/project.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"projectId": "prj_test", "orgId": "team_test"}))
    return Reply(stderr=f"Downloaded project settings to {settings}\n")


def build(state: State, args: list[str]) -> Reply:
    output = directory(args) / ".vercel/output"
    function = output / "functions/index.func"
    function.mkdir(parents=True, exist_ok=True)
    config = {"runtime": "python3.12", "handler": "vc__handler__python.vc_handler"}
    (function / ".vc-config.json").write_text(json.dumps(config | {"environment": {}}))
    target = "production" if "--prod" in args else "preview"
    (output / "builds.json").write_text(json.dumps({"target": target}))
    return Reply(stderr=f"Build Completed in {output}\n")


def deploy(state: State, args: list[str]) -> Reply:
    if "--prebuilt" not in args or "--format=json" not in args:
        return Reply(stderr="fake vercel: only `deploy --prebuilt --format=json`\n", code=99)
    export = directory(args)
    target = "production" if "--prod" in args else None
    built = json.loads((export / ".vercel/output/builds.json").read_text())["target"]
    if built != (target or "preview"):
        return Reply(
            stderr=f"Error: the build is for {built}; build again for this target\n", code=1
        )
    meta = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg in ("--meta", "-m"))
    environment = json.loads((export / FUNCTION).read_text()).get("environment", {})
    project = vercel_state(state)
    number = len(project["deployments"]) + 1
    deployment = {
        "id": f"dpl_{number:04d}",
        "url": f"{PROJECT}-d{number:04d}-team.vercel.app",
        "name": PROJECT,
        "target": target,
        "readyState": "READY",
        "createdAt": 1_767_225_600_000 + number * 60_000,
        "meta": meta,
        "artifact": artifact(
            export, environment.get("IMAGE_TAG", "unknown"), commit=environment.get("GIT_SHA")
        ),
    }
    project["deployments"].append(deployment)
    if target == "production" and "--skip-domain" not in args:
        assign(state, PRODUCTION_DOMAIN, deployment["url"])
    created = {k: deployment[k] for k in ("id", "readyState", "target")}
    return Reply(json.dumps(created | {"url": f"https://{deployment['url']}"}) + "\n")


def api(state: State, args: list[str]) -> Reply:
    path = args[0] if args else ""
    if not path.startswith("/v13/deployments/"):
        return Reply(stderr=f"fake vercel: no API {path}\n", code=99)
    deployment = find(state, path.removeprefix("/v13/deployments/"))
    if deployment is None:
        return Reply(stderr="Error: The deployment could not be found.\n", code=1)
    return Reply(json.dumps(shown(deployment, state), indent=2) + "\n")


def list_deployments(state: State, args: list[str]) -> Reply:
    if "--format=json" not in args:
        return Reply(stderr="fake vercel: only `list --format=json`\n", code=99)
    wanted = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--meta")
    target = {"production": "production", "preview": None}[option(args, "--environment") or ""]
    found = [
        {"url": d["url"], "createdAt": d["createdAt"], "state": d["readyState"]}
        | {"target": d["target"], "meta": d["meta"]}
        for d in reversed(vercel_state(state)["deployments"])
        if d["target"] == target and wanted.items() <= d["meta"].items()
    ]
    return Reply(json.dumps({"deployments": found[:PAGE]}) + "\n")


def promote(state: State, args: list[str]) -> Reply:
    deployment = find(state, args[0])
    if deployment is None or deployment["target"] != "production":
        return Reply(stderr=f"Error: {args[0]} is not a production deployment\n", code=1)
    assign(state, PRODUCTION_DOMAIN, deployment["url"])
    return Reply(stderr=f"Success! {PRODUCTION_DOMAIN} now points to {deployment['url']}\n")


def alias(state: State, args: list[str]) -> Reply:
    if args[:1] != ["set"] or len(args) < 3:
        return Reply(stderr="fake vercel: only `alias set DEPLOYMENT ALIAS`\n", code=99)
    deployment = find(state, args[1])
    if deployment is None:
        return Reply(stderr=f"Error: Deployment {args[1]} not found\n", code=1)
    assign(state, args[2], deployment["url"])
    return Reply(stderr=f"> Success! https://{args[2]} now points to {deployment['url']}\n")


def assign(state: State, domain: str, url: str) -> None:
    """Point a domain at a deployment, and log it in the project's activity."""
    project = vercel_state(state)
    project["aliases"][domain] = url
    project["activity"].append({"domain": domain, "deployment": url})


def run(fakes: Fakes, tool: str, args: list[str]) -> int | None:
    """`psql` taking the release lock: it answers at once, then holds it until its input ends."""
    if tool != "psql":
        return None
    locked = (fakes.root / "advisory.lock").open("a")
    taken = False

    def take(state: State) -> Reply:
        nonlocal taken
        database = state.setdefault("postgres", {})
        if (
            "pg_try_advisory_lock" not in (option(args, "--command") or "")
            or "--file=-" not in args
        ):
            return Reply(stderr="fake psql: only the release lock\n", code=99)
        try:
            fcntl.flock(locked, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return Reply(f"busy {database.get('holder') or 'another release'}\n")
        taken = True
        # PostgreSQL keeps 63 bytes of an application_name.
        database["holder"] = os.environ.get("PGAPPNAME", "psql")[:63]
        return Reply("acquired\n")

    def release(state: State) -> None:
        state.setdefault("postgres", {}).pop("holder", None)

    try:
        reply = fakes.event(tool, args, take)
    except ReleaseKilled:
        if taken:
            fakes.update(release)
        return 137
    sys.stdout.write(reply.stdout)
    sys.stdout.flush()
    sys.stderr.write(reply.stderr)
    if taken:
        sys.stdin.read()  # the session, and its lock, last until psql's input ends
        fakes.update(release)
    return reply.code


# ---------------------------------------------------------------------------------------------
# The release scenarios' view


@dataclass(frozen=True)
class VercelTarget:
    """The vercel target with its worker: the worker on Modal first, then the API."""

    name: str = "vercel"
    tools: tuple[str, ...] = ("vercel", "psql", "nox", "modal", "uv")
    components: tuple[str, ...] = ("worker", "api")
    while_locked: str = "nox -s migrate"

    def prepare(self, fakes: Fakes, project: Path) -> dict[str, str]:
        return dict(CREDENTIALS)

    def publish(self, fakes: Fakes, checkout: Path, version: str) -> None:
        """Nothing: the release builds and uploads the commit itself."""

    def serving(self, state: State) -> dict[str, dict[str, Any] | None]:
        return {"worker": worker.current(state, ENVIRONMENT), "api": served(state)}

    def history(self, state: State) -> list[dict[str, Any]]:
        """The releases of staging: the alias's activity, told apart by the deployments' metadata.

        A deployment the alias serves for the first time is a deploy, which replaced the release
        its `previous` metadata names; one it served before is a rollback to it.
        """
        entries: list[dict[str, Any]] = []
        first: dict[str, int] = {}  # deployment URL -> its deploy's number
        changes = [a for a in vercel_state(state)["activity"] if a["domain"] == STAGING_DOMAIN]
        for number, change in enumerate(changes, 1):
            deployment = find(state, change["deployment"])
            assert deployment is not None
            meta, url = deployment["meta"], deployment["url"]
            entry = {"number": number, "version": meta.get("release", url)}
            if url in first:
                previous = entries[-1]["number"] if entries else None
                entries.append(entry | {"action": "rollback", "previous": previous})
                entries[-1]["restores"] = first[url]
            else:
                first[url] = number
                previous = first.get(meta.get("previous", ""))
                entries.append(entry | {"action": "deploy", "previous": previous})
        return entries

    def locked(self, state: State) -> bool:
        return bool(state.get("postgres", {}).get("holder"))

    def break_component(self, fakes: Fakes, component: str) -> None:
        match = {"worker": "modal deploy", "api": "vercel alias set"}[component]
        fakes.inject("fail", match=match, output="Error: injected failure")


TARGET = VercelTarget()
