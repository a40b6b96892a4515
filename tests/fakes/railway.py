"""Railway as a release sees it: the `railway` CLI and the GraphQL API, over one project.

The project has one environment and its services; each service has variables and deployments,
and the environment has shared variables (where releases keep their history and lock).
`railway up DIR` uploads DIR: the new deployment is built from it, with the service's variables
of that moment as build arguments (IMAGE_TAG labels the artifact), reading the service's config
file (railway.json, or railway.worker.json for the worker) for its pre-deploy command. Time
passes with calls: at the next call after its upload, a deployment runs its pre-deploy commands
against the fake database and goes live — unless a command fails, the Dockerfile is missing or
the service is broken (its healthcheck fails): then it ends FAILED and the live one stays.
`deploymentRollback` starts a new deployment of an older one's image and variables, and sets the
service's variables back to them, as Railway does.

The GraphQL API is served from the test process (`serve`); every request goes through
`Fakes.event("graphql", [operation, subject])`, so tests inject faults into it like into the CLI.
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import Fakes, ReleaseKilled, Reply, State, artifact, migrate, option

TOKEN = "project-token-0123456789"
HISTORY = "RELEASE_HISTORY"
LOCK = "RELEASE_LOCK"


def config_path(service: str) -> str:
    """A service's "Railway Config File" setting (README: Deploying to Railway)."""
    return "railway.json" if service == "api" else f"railway.{service}.json"


LIVE = ("SUCCESS", "SLEEPING")
UNDER_WAY = ("BUILDING", "DEPLOYING")
# Mutations whose type is Boolean!: a selection set on one is a GraphQL error.
BOOLEANS = (
    "variableUpsert",
    "variableCollectionUpsert",
    "variableDelete",
    "deploymentRollback",
    "deploymentCancel",
)
# `railway up` options that take a value; the path is the one argument left.
VALUED = {"-s", "--service", "-e", "--environment", "-m", "--message", "-p", "--project"}


def setup(
    fakes: Fakes,
    *,
    environment: str = "staging",
    services: tuple[str, ...] = ("worker", "api"),
    variables: dict[str, str] | None = None,
) -> None:
    """An empty project: its services, with `variables` each, and nothing deployed."""

    def create(state: State) -> None:
        state["railway"] = {
            "token": TOKEN,
            "project": {"id": "prj-1", "name": "acme"},
            "environment": {"id": f"env-{environment}", "name": environment},
            "services": {name: f"svc-{name}" for name in services},
            "variables": {"shared": {}, **{name: dict(variables or {}) for name in services}},
            "deployments": [],
            "broken": [],
        }

    fakes.update(create)


def deployments(state: State, service: str) -> list[dict[str, Any]]:
    """A service's deployments, newest first."""
    found = [d for d in state["railway"]["deployments"] if d["service"] == service]
    return sorted(found, key=lambda deployment: deployment["number"], reverse=True)


def live(state: State, service: str) -> dict[str, Any] | None:
    """The deployment a service serves from."""
    return next((d for d in deployments(state, service) if d["status"] in LIVE), None)


# ---------------------------------------------------------------------------------------------
# Deployments


def deploy(
    state: State, service: str, *, build: dict[str, Any], variables: dict[str, str], status: str
) -> dict[str, Any]:
    """Start a deployment: `build` holds its artifact and pre-deploy commands (or its error)."""
    railway = state["railway"]
    number = len(railway["deployments"]) + 1
    deployment = {
        "id": f"dep-{number}",
        "number": number,
        "service": service,
        "status": status,
        "createdAt": datetime.now(UTC).isoformat(timespec="microseconds"),
        "started": state["events"],
        "variables": dict(variables),
        "served": False,
        "log": [],
        **build,
    }
    railway["deployments"].append(deployment)
    return deployment


def tick(state: State) -> None:
    """Time passes: deployments uploaded before this call finish."""
    for deployment in sorted(state["railway"]["deployments"], key=lambda d: d["number"]):
        if deployment["status"] in UNDER_WAY and deployment["started"] < state["events"]:
            finish(state, deployment)


def finish(state: State, deployment: dict[str, Any]) -> None:
    """Build, run the pre-deploy commands, check health, and go live or fail."""
    log: list[str] = deployment["log"]
    if error := deployment.get("error"):
        log.append(error)
        deployment["status"] = "FAILED"
        return
    for command in deployment["preDeploy"]:
        code, output = migrate(state, deployment["artifact"], command)
        log.append(f"{command}: {output}")
        if code != 0:
            deployment["status"] = "FAILED"
            return
    if not deployment["artifact"].get("healthy", True):
        log.append("healthcheck failed")
        deployment["status"] = "FAILED"
        return
    if before := live(state, deployment["service"]):
        before["status"] = "REMOVED"
    deployment["status"] = "SUCCESS"
    deployment["served"] = True


def build(
    state: State, service: str, upload: Path, root: Path, variables: dict[str, str]
) -> dict[str, Any]:
    """What Railway builds from an upload of `upload` whose paths start at `root`."""

    def uploaded(name: str) -> Path | None:
        path = root / name
        return path if path.is_relative_to(upload) and path.is_file() else None

    config_file = uploaded(config_path(service))
    config = json.loads(config_file.read_text()) if config_file else {}
    dockerfile = config.get("build", {}).get("dockerfilePath", "Dockerfile")
    if uploaded(dockerfile) is None:
        return {"error": f"{dockerfile} not found in the upload", "preDeploy": []}
    healthy = service not in state["railway"]["broken"]
    built = artifact(
        upload, variables.get("IMAGE_TAG", "dev"), sha=variables.get("GIT_SHA"), healthy=healthy
    )
    commands = config.get("deploy", {}).get("preDeployCommand", [])
    files = sorted(str(p.relative_to(root)) for p in upload.rglob("*") if p.is_file())
    return {"artifact": built, "preDeploy": list(commands), "files": files}


# ---------------------------------------------------------------------------------------------
# The CLI


def handle(state: State, tool: str, args: list[str], stdin: str) -> Reply:
    """`railway up`, the one command releases use."""
    tick(state)
    if args[:1] != ["up"]:
        return Reply(stderr=f"the fake railway knows `railway up`, not {args}\n", code=2)
    railway = state["railway"]
    if os.environ.get("RAILWAY_TOKEN") != railway["token"]:
        return Reply(stderr="Unauthorized. Please login with `railway login`\n", code=1)
    service, environment = option(args, "--service", "-s"), option(args, "--environment", "-e")
    if environment not in (railway["environment"]["name"], railway["environment"]["id"]):
        return Reply(stderr=f"Environment '{environment}' not found\n", code=1)
    if service not in railway["services"]:
        return Reply(stderr=f"Service '{service}' not found\n", code=1)
    paths = [a for i, a in enumerate(args[1:]) if not a.startswith("-") and args[i] not in VALUED]
    cwd = Path.cwd()
    upload = (cwd / paths[0]).resolve() if paths else cwd
    root = upload if "--path-as-root" in args else cwd
    if not upload.is_relative_to(root):
        return Reply(stderr="prefix not found\n", code=1)
    variables = railway["variables"][service]
    made = build(state, service, upload, root, variables)
    deployment = deploy(state, service, build=made, variables=variables, status="BUILDING")
    deployment["message"] = option(args, "--message", "-m")
    if "--detach" not in args:  # the CLI follows the deployment to its end
        finish(state, deployment)
        code = 0 if deployment["status"] == "SUCCESS" else 1
        return Reply(stdout="\n".join(deployment["log"]) + "\n", code=code)
    reply = {"deploymentId": deployment["id"], "logsUrl": f"https://railway.com/{deployment['id']}"}
    return Reply(stdout=json.dumps(reply) + "\n")


# ---------------------------------------------------------------------------------------------
# The GraphQL API


class GraphQLError(Exception):
    """What the API answers in `errors`."""


def operation(query: str) -> str:
    """The name of a query or mutation: `mutation name(...)` gives name."""
    match = re.match(r"\s*(?:query|mutation)\s+(\w+)", query)
    return match.group(1) if match else ""


def subject(body: dict[str, Any]) -> list[str]:
    """What a request acts on, for fault injections to match: a variable, service or deployment."""
    variables = body.get("variables") or {}
    given = variables.get("input", variables)
    for key in ("name", "id", "serviceId"):
        if isinstance(given.get(key), str):
            return [given[key]]
    return ["shared"] if operation(body.get("query", "")) == "variables" else []


def answer(state: State, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """The API's reply to one request."""
    tick(state)
    try:
        if token != state["railway"]["token"]:
            raise GraphQLError("Not Authorized")
        return {"data": resolve(state, body["query"], body.get("variables") or {})}
    except KeyError as exc:
        return {"errors": [{"message": f"Variable {exc} is required"}], "data": None}
    except GraphQLError as exc:
        return {"errors": [{"message": str(exc)}], "data": None}


def resolve(state: State, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    railway = state["railway"]
    name = operation(query)
    selection = query[query.find("{") + 1 :]
    if name in BOOLEANS and re.search(rf"{name}\([^)]*\)\s*\{{", selection):
        msg = f"Field '{name}' must not have a selection since type 'Boolean!' has no subfields."
        raise GraphQLError(msg)
    given = variables.get("input", variables)
    if name == "projectToken":
        edges = [{"node": {"id": i, "name": n}} for n, i in railway["services"].items()]
        project = {**railway["project"], "services": {"edges": edges}}
        return {"projectToken": {"project": project, "environment": railway["environment"]}}
    if name == "deployment":
        found = find(state, variables["id"])
        return {"deployment": {"id": found["id"], "status": found["status"]}}
    if name == "deploymentRollback":
        old = find(state, variables["id"])
        if not old["served"]:
            raise GraphQLError("Deployment cannot be rolled back")
        restored = {"artifact": old["artifact"], "preDeploy": old["preDeploy"]}
        service = old["service"]
        deploy(state, service, build=restored, variables=old["variables"], status="DEPLOYING")
        railway["variables"][service] = dict(old["variables"])
        return {name: True}
    if name == "deploymentCancel":
        found = find(state, variables["id"])
        if found["status"] in UNDER_WAY:
            found["status"] = "REMOVED"
        return {name: True}
    # Everything else is scoped to the token's project and environment.
    if (given.get("projectId"), given.get("environmentId")) != (
        railway["project"]["id"],
        railway["environment"]["id"],
    ):
        raise GraphQLError("Not Authorized")
    service = scoped_service(state, given.get("serviceId"))
    if name == "deployments":
        if service is None:
            raise GraphQLError("serviceId is required")
        nodes = []
        for d in deployments(state, service)[: variables.get("first") or 100]:
            restorable = d["served"] and d["status"] not in LIVE
            node = {"id": d["id"], "status": d["status"], "createdAt": d["createdAt"]}
            node = {**node, "canRollback": restorable}
            # Only the fields the query selects, as GraphQL answers.
            nodes.append({k: v for k, v in node.items() if re.search(rf"\b{k}\b", query)})
        return {"deployments": {"edges": [{"node": node} for node in nodes]}}
    values: dict[str, str] = railway["variables"][service or "shared"]
    if name == "variables":
        return {"variables": dict(values)}
    if name == "variableUpsert":
        values[given["name"]] = given["value"]
    elif name == "variableCollectionUpsert":
        if given.get("replace"):
            values.clear()
        values.update(given["variables"])
    elif name == "variableDelete":
        values.pop(given["name"], None)
    else:
        raise GraphQLError(f'Cannot query field "{name}" on type "Query".')
    if service is not None and not given.get("skipDeploys") and (running := live(state, service)):
        # A variable change redeploys the service with the new variables.
        kept = {"artifact": running["artifact"], "preDeploy": running["preDeploy"]}
        deploy(state, service, build=kept, variables=values, status="DEPLOYING")
    return {name: True}


def find(state: State, deployment: str) -> dict[str, Any]:
    found = [d for d in state["railway"]["deployments"] if d["id"] == deployment]
    if not found:
        raise GraphQLError("Deployment not found")
    return found[0]


def scoped_service(state: State, service_id: str | None) -> str | None:
    if service_id is None:
        return None
    names = {i: n for n, i in state["railway"]["services"].items()}
    if service_id not in names:
        raise GraphQLError("Service not found")
    return names[service_id]


_servers: dict[Path, ThreadingHTTPServer] = {}


def serve(fakes: Fakes) -> str:
    """Serve the GraphQL API of `fakes` on 127.0.0.1 (once); its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            token = self.headers.get("Project-Access-Token")
            try:
                reply = fakes.event(
                    "graphql",
                    [operation(body.get("query", "")), *subject(body)],
                    lambda state: Reply(stdout=json.dumps(answer(state, token, body))),
                )
            except ReleaseKilled:
                self.close_connection = True
                return
            status = 200 if reply.code == 0 else 503
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
            self.end_headers()
            self.wfile.write((reply.stdout if status == 200 else reply.stderr).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    if fakes.root not in _servers:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _servers[fakes.root] = server
    return f"http://127.0.0.1:{_servers[fakes.root].server_address[1]}/graphql/v2"


def stop(fakes: Fakes) -> None:
    """Stop serving the API of `fakes`."""
    if server := _servers.pop(fakes.root, None):
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# The release scenarios (tests/test_release_scenarios.py)


class Target:
    """How the release scenarios drive this fake."""

    name = "railway"
    tools = ("railway",)
    while_locked = "railway up"

    @property
    def components(self) -> tuple[str, ...]:
        """What the scenarios' variant releases, in order: it has the extra services."""
        from ..matrix import TWO_SERVICES  # here, not at the top: the fake CLIs never need it

        return ("worker", *sorted(TWO_SERVICES), "api")

    def prepare(self, fakes: Fakes, project: Path) -> dict[str, str]:
        setup(fakes, services=self.components)
        return {"RAILWAY_TOKEN": TOKEN, "RAILWAY_API_URL": serve(fakes)}

    def publish(self, fakes: Fakes, checkout: Path, version: str) -> None:
        """Nothing: Railway builds what `railway up` uploads."""

    def serving(self, state: State) -> dict[str, dict[str, Any] | None]:
        return {
            service: (deployment or {}).get("artifact")
            for service, deployment in ((s, live(state, s)) for s in self.components)
        }

    def history(self, state: State) -> list[dict[str, Any]]:
        text = state["railway"]["variables"]["shared"].get(HISTORY, "")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def locked(self, state: State) -> bool:
        return LOCK in state["railway"]["variables"]["shared"]

    def break_component(self, fakes: Fakes, component: str) -> None:
        """Its next deployment fails its healthcheck."""
        fakes.update(lambda state: state["railway"]["broken"].append(component))


TARGET = Target()
