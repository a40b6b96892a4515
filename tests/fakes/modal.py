"""Modal, as the `modal` CLI shows it to a release: apps, their deployments, volumes, web endpoints.

The state's "modal" part holds each Modal environment's apps (every deployment, newest last, with
the artifact built from the checkout it was deployed from) and volumes (files by name). The app
serves its newest deployment unless it was stopped. `modal run ::migrate` runs the checkout's
migrations against the fake database, with the `migrate` command of the package. The web endpoint
of each environment's app answers over HTTP from the test process (`endpoint`): /version reports
the serving deployment's IMAGE_TAG, and the readiness check answers 200 when it can serve.
`uv run --directory=DIR --locked --no-dev modal ...` is the Modal CLI of the checkout in DIR.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import Fakes, Reply, State, artifact, migrate, runs_on

APP = "my-service"  # the app of the rendered project the scenarios release
ENVIRONMENT = "staging"
VOLUME = f"{APP}-releases"
TOKENS = {"MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test"}
CLIENT = "1.6.4"
# Options that take a value, and flags, of the commands a release runs; aliases to their long name.
VALUES = {"--env", "-e", "--tag", "-m", "--name", "--directory", "--project"}
FLAGS = {"--json", "--force", "-f", "--yes", "-y", "--locked", "--no-dev", "--detach"}
ALIASES = {"-e": "--env", "-f": "--force", "-y": "--yes"}


class Unsupported(Exception):
    """A call the fake does not know: the test should fail loudly, not pass by accident."""


def parse(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The positional arguments and the options of a command line."""
    positional: list[str] = []
    options: dict[str, Any] = {}
    rest = iter(args)
    for arg in rest:
        name, equals, value = arg.partition("=")
        name = ALIASES.get(name, name)
        if name in VALUES:
            options[name] = value if equals else next(rest)
        elif name in FLAGS:
            options[name] = True
        elif arg.startswith("-") and arg != "-":
            raise Unsupported(arg)
        else:
            positional.append(arg)
    return positional, options


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def environment(state: State, name: str) -> dict[str, Any]:
    """A Modal environment's apps and volumes."""
    modal = state.setdefault("modal", {})
    environments = modal.setdefault("environments", {})
    found: dict[str, Any] = environments.setdefault(name, {"apps": {}, "volumes": {}})
    return found


def app_name(checkout: Path) -> str:
    """The name the checkout's modal_app.py gives its app."""
    for module in checkout.glob("src/*/modal_app.py"):
        if match := re.search(r'^APP_NAME = "([^"]+)"', module.read_text(), re.MULTILINE):
            return match.group(1)
    raise Unsupported(f"no modal_app.py with an APP_NAME in {checkout}")


def current(state: State, env: str, name: str = APP) -> dict[str, Any] | None:
    """The artifact an app serves: its newest deployment's, unless it was stopped."""
    app = environment(state, env)["apps"].get(name)
    if not app or app["stopped"] or not app["deployments"]:
        return None
    served: dict[str, Any] = app["deployments"][-1]["artifact"]
    return served


def built(state: State, checkout: Path) -> dict[str, Any]:
    """The artifact Modal builds from a checkout, labelled as the release labels it."""
    version = os.environ.get("IMAGE_TAG", "unknown")
    broken = version in state.get("modal", {}).get("broken", [])
    return artifact(checkout, version, commit=os.environ.get("GIT_SHA"), healthy=not broken)


# ---------------------------------------------------------------------------------------------
# The CLI


def handle(state: State, tool: str, args: list[str], stdin: str) -> Reply:
    """`modal ARGS`, or `uv run [--directory=DIR] ... modal ARGS`."""
    try:
        if tool == "uv":
            return uv(state, args)
        if tool == "modal":
            return modal(state, args, Path.cwd())
    except Unsupported as exc:
        return Reply(stderr=f"fake {tool}: unsupported call: {exc}\n", code=99)
    return Reply(stderr=f"fake modal: no tool {tool}\n", code=99)


def uv(state: State, args: list[str]) -> Reply:
    """`uv run`, running the Modal CLI of a checkout."""
    if args[:1] != ["run"] or "modal" not in args:
        raise Unsupported(" ".join(args))
    at = args.index("modal")
    _, options = parse(args[1:at])
    if not {"--locked", "--no-dev"} <= options.keys():
        raise Unsupported("uv run without --locked --no-dev")
    directory = options.get("--directory") or options.get("--project") or "."
    return modal(state, args[at + 1 :], Path.cwd() / directory)


def modal(state: State, args: list[str], checkout: Path) -> Reply:
    """One Modal CLI command, run in `checkout`."""
    command, rest = args[0], args[1:]
    if command in ("app", "volume", "function"):
        command, rest = f"{command} {rest[0]}", rest[1:]
    positional, options = parse(rest)
    env = options.get("--env")
    if env is None:
        raise Unsupported(f"modal {command} without --env")
    commands = {
        "deploy": deploy,
        "run": run_migration,
        "app history": history,
        "app stop": stop,
        "function info": function_info,
        "volume create": volume_create,
        "volume put": volume_put,
        "volume get": volume_get,
        "volume rm": volume_rm,
        "volume ls": volume_ls,
    }
    if command not in commands:
        raise Unsupported(f"modal {command}")
    return commands[command](Call(state, env, positional, options, checkout))


@dataclass(frozen=True)
class Call:
    """One Modal CLI command: the state it changes, its environment, arguments and checkout."""

    state: State
    env: str
    positional: list[str]
    options: dict[str, Any]
    checkout: Path

    @property
    def apps(self) -> dict[str, Any]:
        found: dict[str, Any] = environment(self.state, self.env)["apps"]
        return found

    def volume(self, name: str) -> dict[str, str] | None:
        found: dict[str, str] | None = environment(self.state, self.env)["volumes"].get(name)
        return found


def deploy(call: Call) -> Reply:
    if not str(call.options.get("-m", "")).endswith(".modal_app") or call.positional:
        raise Unsupported("modal deploy of anything but -m <package>.modal_app")
    name, tag = app_name(call.checkout), call.options.get("--tag")
    app = call.apps.setdefault(name, {"deployments": [], "stopped": False})
    new = built(call.state, call.checkout)
    newest = app["deployments"][-1] if app["deployments"] else None
    if newest and not app["stopped"] and (newest["artifact"], newest["tag"]) == (new, tag):
        return Reply("Deployment skipped: no changes detected!\n")
    app["deployments"].append(
        {
            "version": len(app["deployments"]) + 1,
            "time_deployed": now(),
            "client": CLIENT,
            "deployed_by": "release",
            "commit": (new.get("commit") or "")[:7],
            "tag": tag,
            "artifact": new,
        }
    )
    app["stopped"] = False
    return Reply(f"✓ App deployed! 🎉\n\nView Deployment: https://modal.com/apps/test/{name}\n")


def run_migration(call: Call) -> Reply:
    module, _, function = str(call.options.get("-m", "")).partition("::")
    if not module.endswith(".modal_app") or function != "migrate" or call.positional:
        raise Unsupported("modal run of anything but -m <package>.modal_app::migrate")
    command = f"{app_name(call.checkout)} migrate"
    code, said = migrate(call.state, built(call.state, call.checkout), command)
    return Reply(f"{said}\n") if code == 0 else Reply(stderr=f"{said}\n", code=code)


def history(call: Call) -> Reply:
    if not call.options.get("--json"):
        raise Unsupported("modal app history without --json")
    app = call.apps.get(call.positional[0])
    if app is None:
        return Reply(stderr=f"Error: App '{call.positional[0]}' not found.\n", code=1)
    tagged = any(d["tag"] for d in app["deployments"])
    keys = ("time_deployed", "client", "deployed_by", "commit")
    rows = [
        {"version": f"v{d['version']}", **{k: d[k] for k in keys}}
        | ({"tag": d["tag"]} if tagged else {})
        for d in reversed(app["deployments"])
    ]
    return Reply(json.dumps(rows, indent=2) + "\n")


def stop(call: Call) -> Reply:
    app = call.apps.get(call.positional[0])
    if app is None or app["stopped"]:
        return Reply(stderr="App is already stopped.\n", code=1)
    app["stopped"] = True
    return Reply()


def function_info(call: Call) -> Reply:
    name, _, function = call.positional[0].partition("/")
    app = call.apps.get(name)
    if function != "web" or app is None or app["stopped"] or not call.options.get("--json"):
        return Reply(stderr=f"Error: Function '{call.positional[0]}' not found.\n", code=1)
    url = f"{call.state['modal']['endpoint']}/{name}/{call.env}"
    return Reply(json.dumps({"name": function, "web_info": {"web_url": url}}) + "\n")


def volume_create(call: Call) -> Reply:
    name = call.positional[0]
    volumes = environment(call.state, call.env)["volumes"]
    if name in volumes:
        return Reply(stderr=f"Error: Volume '{name}' already exists.\n", code=1)
    volumes[name] = {}
    return Reply(f"Created Volume '{name}'.\n")


def volume_put(call: Call) -> Reply:
    name, local, remote = call.positional
    volume = call.volume(name)
    if volume is None:
        return Reply(stderr=f"Error: Volume '{name}' not found.\n", code=1)
    if remote in volume and not call.options.get("--force"):
        return Reply(stderr=f"Error: {remote} already exists, use --force to overwrite\n", code=2)
    volume[remote] = Path(local).read_text()
    return Reply(f"✓ Uploaded file '{local}' to '{remote}'\n")


def volume_get(call: Call) -> Reply:
    name, remote, local = call.positional
    volume = call.volume(name)
    if volume is None or remote not in volume:
        return Reply(stderr=f"Error: {remote} not found in the volume {name}.\n", code=1)
    if Path(local).exists() and not call.options.get("--force"):
        return Reply(stderr=f"Error: Output path '{local}' already exists.\n", code=2)
    Path(local).write_text(volume[remote])
    return Reply("✓ Finished downloading files to local!\n")


def volume_rm(call: Call) -> Reply:
    name, remote = call.positional
    volume = call.volume(name)
    if volume is None or remote not in volume:
        return Reply(stderr=f"Error: {remote} not found in the volume {name}.\n", code=1)
    del volume[remote]
    return Reply(f"✓ {remote} was deleted successfully!\n")


def volume_ls(call: Call) -> Reply:
    volume = call.volume(call.positional[0])
    if volume is None:
        return Reply(stderr=f"Error: Volume '{call.positional[0]}' not found.\n", code=1)
    entries = [
        {"filename": path, "type": "file", "created_modified": now(), "size": f"{len(text)} B"}
        for path, text in sorted(volume.items())
    ]
    return Reply(json.dumps(entries) + "\n")


# ---------------------------------------------------------------------------------------------
# The web endpoints, served from the test process

_endpoints: dict[str, Path] = {}  # a platform's token in the URL -> its fakes root
_server: ThreadingHTTPServer | None = None
_starting = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    """GET /<token>/<app>/<environment>/<path>: the app's web endpoint."""

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/", 3)
        root = _endpoints.get(parts[0]) if len(parts) == 4 else None
        if root is None:
            self.answer(404, {"detail": "no such endpoint"})
            return
        state = Fakes(root, "modal", ()).state()
        running = current(state, parts[2], parts[1])
        revision = state.get("database", {}).get("revision")
        if running is None:
            self.answer(404, {"detail": "app not found"})
        elif parts[3] == "version":
            self.answer(200, {"image_tag": running["version"], "git_sha": running.get("commit")})
        elif parts[3] == "health/ready":
            ready = running.get("healthy", True) and runs_on(running, revision)
            self.answer(200 if ready else 503, {"status": "ready" if ready else "not ready"})
        else:
            self.answer(404, {"detail": "Not Found"})

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""


def endpoint(fakes: Fakes) -> str:
    """Serve the web endpoints of a fake Modal from this process; their base URL."""
    global _server
    with _starting:
        if _server is None:
            _server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=_server.serve_forever, daemon=True).start()
    token = f"p{len(_endpoints)}"
    _endpoints[token] = fakes.root
    return f"http://127.0.0.1:{_server.server_address[1]}/{token}"


# ---------------------------------------------------------------------------------------------
# The release scenarios' view


def volume_files(state: State, env: str = ENVIRONMENT) -> dict[str, str]:
    """The files of the environment's releases volume."""
    return environment(state, env)["volumes"].get(VOLUME, {})  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ModalTarget:
    """The modal target: one app, whose web endpoint and jobs switch together."""

    name: str = "modal"
    tools: tuple[str, ...] = ("modal", "uv")
    components: tuple[str, ...] = ("app",)
    while_locked: str = "::migrate"

    def prepare(self, fakes: Fakes, project: Path) -> dict[str, str]:
        url = endpoint(fakes)
        fakes.update(lambda state: state.setdefault("modal", {}).update(endpoint=url))
        return dict(TOKENS)

    def publish(self, fakes: Fakes, checkout: Path, version: str) -> None:
        """Nothing: Modal builds the image from the checkout being deployed."""

    def serving(self, state: State) -> dict[str, dict[str, Any] | None]:
        return {"app": current(state, ENVIRONMENT)}

    def history(self, state: State) -> list[dict[str, Any]]:
        text = volume_files(state).get("releases.jsonl", "")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def locked(self, state: State) -> bool:
        return "lock.json" in volume_files(state)

    def break_component(self, fakes: Fakes, component: str) -> None:
        fakes.inject("fail", match="modal deploy", output="Error: Image build failed")


TARGET = ModalTarget()
