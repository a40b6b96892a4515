"""The k8s target: release plans, what a release does against a fake cluster, and the manifests.

The fast tier reads dry-run plans and runs real releases against a fake `kubectl` that records
every call (and can fail one). The validate tier builds every variant's overlays with the real
kustomize, through the deploy's own code, and checks what it would apply: kubernetes-validate,
checkov, the restricted Pod Security Standard, probes, resources and the migration Job.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Render
from .deploy import BARE_ENV, commands, dry_run, nox
from .matrix import Variant, full_variant, variants_of

SLUG = "my-service"
IMAGE = "ghcr.io/your-org/my-service"
DOMAIN = "api.example.com"
ENVIRONMENTS = ["staging", "production"]
HOSTS = {"staging": f"staging.{DOMAIN}", "production": DOMAIN}
VARIANTS = variants_of("k8s")
FULL = full_variant("k8s")
SECRETS = {
    "DATABASE_URL": "postgresql://app:pw@db.example.com:5432/app?sslmode=require",
    "REDIS_URL": "rediss://default:pw@redis.example.com:6379/0",
    "API_KEY": "k" * 40,
}

variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)
environments = pytest.mark.parametrize("environment", ENVIRONMENTS)

# Stands in for kubectl, docker and kind, by the name it is called with: it appends each call to
# $FAKE_LOG, fails a call that contains $FAKE_FAIL, and answers what a release reads. `kubectl
# kustomize` runs $FAKE_KUSTOMIZE (the real kubectl) when set; `kubectl apply --filename` copies
# the file into $FAKE_CAPTURE; `kubectl port-forward` serves the readiness path.
FAKE = """\
import json, os, pathlib, shutil, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

tool, args = pathlib.Path(sys.argv[0]).name, sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([tool, *args]) + "\\n")
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in " ".join([tool, *args]):
    sys.exit(1)
if tool != "kubectl":
    sys.exit(0)
options = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
if args[:2] == ["config", "current-context"]:
    print(os.environ.get("FAKE_CONTEXT", "fake-cluster"))
elif args[:1] == ["kustomize"]:
    release = pathlib.Path(args[1])
    shutil.copytree(release.parent, os.environ["FAKE_CAPTURE"] + "/tree", dirs_exist_ok=True)
    if os.environ.get("FAKE_KUSTOMIZE"):
        os.execv(os.environ["FAKE_KUSTOMIZE"], ["kubectl", *args])
    pathlib.Path(options["output"]).write_text("")
elif args[:1] == ["apply"] and "filename" in options:
    shutil.copy(options["filename"], os.environ["FAKE_CAPTURE"] + "/manifests.yaml")
elif args[:2] == ["get", "replicasets"]:
    print(pathlib.Path(os.environ["FAKE_REPLICASETS"]).read_text())
elif args[:1] == ["port-forward"]:
    class Ready(BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path == "/health/ready"
            body = json.dumps({"status": "ready"} if found else {"detail": "Not Found"}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", int(args[-1].split(":")[0])), Ready).serve_forever()
"""


@dataclass
class Cluster:
    """A fake cluster: the directory of the fake tools, their call log, what they captured."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def capture(self) -> Path:
        return self.root / "capture"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a release that only reaches this cluster."""
        return {
            "PATH": os.pathsep.join([str(self.bin), BARE_ENV["PATH"]]),
            "FAKE_LOG": str(self.root / "calls.jsonl"),
            "FAKE_CAPTURE": str(self.capture),
            "KUBECONFIG": str(self.root / "kubeconfig"),
            **extra,
        }

    def calls(self, tool: str = "kubectl") -> list[list[str]]:
        """The arguments of every call of `tool`, in order."""
        log = self.root / "calls.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        return [call[1:] for call in map(json.loads, lines) if call[0] == tool]


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    """Fake kubectl, docker and kind on a PATH of their own."""
    fake = Cluster(tmp_path / "cluster")
    fake.bin.mkdir(parents=True)
    fake.capture.mkdir()
    for tool in ("kubectl", "docker", "kind"):
        script = fake.bin / tool
        script.write_text(f"#!{sys.executable}\n{FAKE}")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return fake


def argv(plan: str) -> list[list[str]]:
    """The commands of a plan, split into arguments."""
    return [shlex.split(command) for command in commands(plan)]


def position(calls: list[list[str]], *words: str) -> int:
    """The index of the first call that has every one of `words` among its arguments."""
    return next(i for i, call in enumerate(calls) if all(word in call for word in words))


def matching(calls: list[list[str]], *words: str) -> list[list[str]]:
    """The calls that have every one of `words` among their arguments."""
    return [call for call in calls if all(word in call for word in words)]


def deployments(variant: Variant) -> list[str]:
    """The Deployments of a variant, in rollout order."""
    return [f"{SLUG}-api"] + ([f"{SLUG}-worker"] if variant.features.worker else [])


# Fast tier: plans.


@environments
def test_deploy_plan_migrates_before_rolling_out(render: Render, environment: str) -> None:
    plan = dry_run(render(FULL), "deploy", environment, "--version", "v1.2.3")
    calls = argv(plan)
    namespace = f"--namespace={SLUG}-{environment}"
    job = f"{SLUG}-migrate-v1-2-3"
    build = position(calls, "kustomize")
    needs = position(
        calls, "apply", "--selector=app.kubernetes.io/component notin (api,worker,migrate)"
    )
    run_job = position(calls, "apply", "--selector=app.kubernetes.io/component=migrate")
    waits = [
        position(calls, "wait", f"job/{job}", namespace, condition)
        for condition in (
            "--for=jsonpath={.status.conditions[0].status}=True",
            "--for=condition=Complete",
        )
    ]
    roll_out = position(calls, "apply", "--selector=app.kubernetes.io/component in (api,worker)")
    statuses = [
        position(calls, "rollout", "status", f"deployment/{name}", namespace)
        for name in deployments(FULL)
    ]
    assert calls[0] == ["kubectl", "config", "current-context"]
    assert build < needs < run_job < waits[0] < waits[1] < roll_out < statuses[0] < statuses[1]
    assert position(calls, "delete", "job", job, namespace, "--ignore-not-found") < run_job
    assert waits[0] < position(calls, "logs", f"--selector=batch.kubernetes.io/job-name={job}")
    assert matching(calls, "rollout", "undo") == []
    # The release's image tag reaches the cluster through the kustomization the plan shows.
    assert f"- ../overlays/{environment}" in plan
    assert f"- name: {IMAGE}" in plan
    assert 'newTag: "v1.2.3"' in plan
    assert f"value: {job}" in plan


@variants
def test_deploy_plan_rolls_out_the_variants_deployments(render: Render, variant: Variant) -> None:
    calls = argv(dry_run(render(variant), "deploy", "production", "--version", "sha-abc1234"))
    rolled = [call[3] for call in matching(calls, "rollout", "status")]
    assert rolled == [f"deployment/{name}" for name in deployments(variant)]
    assert matching(calls, "wait", f"job/{SLUG}-migrate-sha-abc1234")


@environments
def test_rollback_plan_undoes_then_waits(render: Render, environment: str) -> None:
    calls = argv(dry_run(render(FULL), "rollback", environment))
    namespace = f"--namespace={SLUG}-{environment}"
    undone = [
        position(calls, "undo", f"deployment/{name}", namespace) for name in deployments(FULL)
    ]
    waited = [
        position(calls, "status", f"deployment/{name}", namespace) for name in deployments(FULL)
    ]
    assert max(undone) < min(waited)
    assert not any(arg.startswith("--to-revision") for call in calls for arg in call)
    assert matching(calls, "apply") == []


def test_rollback_plan_to_a_version_looks_up_its_revisions(render: Render) -> None:
    plan = dry_run(render(FULL), "rollback", "production", "1.4.0")
    calls = argv(plan)
    lookup = position(calls, "get", "replicasets", f"--namespace={SLUG}-production")
    undo = position(calls, "undo", f"deployment/{SLUG}-api", "--to-revision=REVISION")
    assert lookup < undo < position(calls, "status", f"deployment/{SLUG}-api")
    assert f"Find the revisions that ran {IMAGE}:1.4.0" in plan


def test_deploy_refuses_a_version_that_is_no_image_tag(render: Render) -> None:
    result = nox(render(FULL), "deploy", "staging", "--version", "v1/2", "--dry-run")
    assert result.returncode != 0
    assert "deploy failed: 'v1/2' is not an image tag" in result.stdout


# Fast tier: real releases against the fake cluster.


def release(project: Path, cluster: Cluster, *posargs: str, **env: str) -> str:
    """Run a real deploy or rollback against the fake cluster; return what it printed."""
    # nox relays the session's output, stderr included, on its stdout
    return nox(project, *posargs, env=cluster.env(**SECRETS, **env)).stdout


def test_deploy_builds_the_release_from_a_copy_and_cleans_up(
    render: Render, cluster: Cluster
) -> None:
    project = render(FULL)
    output = release(project, cluster, "deploy", "staging", "--version", "v2.0.0")
    assert "\ndeploy of staging done.\n" in output, output
    tree = cluster.capture / "tree"
    assert (tree / "base" / "secret.env").read_text() == "".join(
        f"{key}={value}\n" for key, value in SECRETS.items()
    )
    assert stat.S_IMODE((tree / "base" / "secret.env").stat().st_mode) == 0o600
    assert 'newTag: "v2.0.0"' in (tree / "release" / "kustomization.yaml").read_text()
    build = next(call for call in cluster.calls() if call[0] == "kustomize")
    assert not Path(build[1]).exists(), "the release's scratch copy outlived the deploy"
    assert not (project / "deploy/k8s/base/secret.env").exists()
    for secret in SECRETS.values():
        assert secret not in output


def test_a_failed_migration_stops_the_deploy_before_the_rollout(
    render: Render, cluster: Cluster
) -> None:
    output = release(
        render(FULL),
        cluster,
        "deploy",
        "production",
        "--version",
        "v2.0.0",
        FAKE_FAIL="--for=condition=Complete",
    )
    calls = cluster.calls()
    failure = f"deploy failed: the migration Job {SLUG}-migrate-v2-0-0 failed (its log is above)"
    assert failure in output
    logs = position(calls, "logs", f"--selector=batch.kubernetes.io/job-name={SLUG}-migrate-v2-0-0")
    assert logs < position(calls, "wait", "--for=condition=Complete")
    assert matching(calls, "--selector=app.kubernetes.io/component in (api,worker)") == []
    assert matching(calls, "rollout") == []


def test_a_failed_rollout_is_undone(render: Render, cluster: Cluster) -> None:
    output = release(
        render(FULL),
        cluster,
        "deploy",
        "production",
        "--version",
        "v2.0.0",
        FAKE_FAIL=f"rollout status deployment/{SLUG}-api",
    )
    calls = cluster.calls()
    assert "deploy failed: the new pods did not become ready" in output
    failed = position(calls, "rollout", "status", f"deployment/{SLUG}-api")
    listed = position(calls, "get", "pods")
    undone = [
        position(calls, "rollout", "undo", f"deployment/{name}") for name in deployments(FULL)
    ]
    assert failed < listed < min(undone)


def replica_set(deployment: str, revision: int, tag: str) -> dict[str, Any]:
    """A ReplicaSet as `kubectl get replicasets --output=json` lists it."""
    return {
        "metadata": {
            "name": f"{deployment}-{revision}",
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Deployment", "name": deployment}],
        },
        "spec": {"template": {"spec": {"containers": [{"image": f"{IMAGE}:{tag}"}]}}},
    }


@pytest.fixture
def history(cluster: Cluster) -> dict[str, str]:
    """Revisions in which the api and the worker count differently (the worker changed alone)."""
    api, worker = f"{SLUG}-api", f"{SLUG}-worker"
    items = [
        replica_set(api, 4, "1.3.0"),
        replica_set(api, 5, "1.4.0"),
        replica_set(api, 6, "1.5.0"),
        replica_set(worker, 7, "1.3.0"),
        replica_set(worker, 8, "1.4.0"),
        replica_set(worker, 9, "1.4.0"),
        replica_set(worker, 10, "1.5.0"),
    ]
    listing = cluster.root / "replicasets.json"
    listing.write_text(json.dumps({"items": items}))
    return {"FAKE_REPLICASETS": str(listing)}


def test_rollback_to_a_version_finds_each_deployments_revision(
    render: Render, cluster: Cluster, history: dict[str, str]
) -> None:
    output = release(render(FULL), cluster, "rollback", "production", "1.4.0", **history)
    assert "\nrollback of production done.\n" in output, output
    undos = matching(cluster.calls(), "rollout", "undo")
    assert [call[2:] for call in undos] == [
        [f"deployment/{SLUG}-api", f"--namespace={SLUG}-production", "--to-revision=5"],
        [f"deployment/{SLUG}-worker", f"--namespace={SLUG}-production", "--to-revision=9"],
    ]


def test_rollback_to_an_unknown_version_changes_nothing(
    render: Render, cluster: Cluster, history: dict[str, str]
) -> None:
    output = release(render(FULL), cluster, "rollback", "production", "0.9.0", **history)
    assert f"rollback failed: no revision of deployment/{SLUG}-api" in output
    assert matching(cluster.calls(), "rollout") == []


def smoke(project: Path, cluster: Cluster, *args: str, **env: str) -> str:
    """Run the module behind `nox -s k8s-smoke` against the fake cluster."""
    result = subprocess.run(
        [sys.executable, "-m", "scripts.deploy.k8s", *args],
        cwd=project,
        env={**BARE_ENV, **cluster.env(**env)},
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


def test_smoke_deploys_to_a_local_cluster_and_reads_readiness(
    render: Render, cluster: Cluster
) -> None:
    project = render(FULL)
    urls = {key: SECRETS[key] for key in ("DATABASE_URL", "REDIS_URL")}
    output = smoke(project, cluster, FAKE_CONTEXT="kind-dev", **urls)
    assert "\nk8s-smoke passed.\n" in output, output
    [build] = cluster.calls("docker")
    [load] = cluster.calls("kind")
    tag = build[1].removeprefix("--tag=")
    assert tag.startswith(f"{IMAGE}:smoke-")
    assert build == ["build", f"--tag={tag}", str(project)]
    assert load == ["load", "docker-image", "--name=dev", tag]
    assert 'answer: {"status": "ready"}' in output
    assert matching(cluster.calls(), "rollout", "status", f"--namespace={SLUG}-staging")


def test_smoke_refuses_a_cluster_that_is_not_local(render: Render, cluster: Cluster) -> None:
    urls = {key: SECRETS[key] for key in ("DATABASE_URL", "REDIS_URL")}
    output = smoke(render(FULL), cluster, FAKE_CONTEXT="gke_acme_prod", **urls)
    assert "k8s-smoke failed: kubectl's current context 'gke_acme_prod' is not a local" in output
    assert cluster.calls("docker") == []
    assert matching(cluster.calls(), "apply") == []


def test_smoke_dry_run_prints_the_plan(render: Render, cluster: Cluster) -> None:
    output = smoke(render(FULL), cluster, "--dry-run")
    calls = argv(output)
    assert "\nk8s-smoke planned.\n" in output, output
    assert position(calls, "docker", "build") < position(calls, "kustomize")
    assert position(calls, "rollout", "status") < position(calls, "port-forward")
    assert "GET http://127.0.0.1:" in output
    assert cluster.calls() == []
    assert cluster.calls("docker") == []


# Validate tier: what a release would apply, built by the real kustomize.

WORKLOADS = {"Deployment", "Job"}
# Kinds whose schemas come with a CRD, not with Kubernetes.
CRDS = {("cert-manager.io/v1", "ClusterIssuer")}
KUBERNETES = "1.33.0"


def tool(name: str) -> str:
    """The path of a validator; the validate dependency group installs them."""
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: run the tests with `nox -s validate`"
    return path


@dataclass(frozen=True)
class Release:
    """The objects one release of a variant applies."""

    variant: Variant
    environment: str
    file: Path
    objects: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        [found] = [o for o in self.of(kind) if o["metadata"]["name"] == name]
        return found


Releases = dict[tuple[Variant, str], Release]


def pods(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The name and pod spec of every workload."""
    for workload in objects:
        if workload["kind"] in WORKLOADS:
            yield workload["metadata"]["name"], workload["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def releases(render: Render, tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """Every variant's release to each environment, as the deploy builds it with kustomize."""
    kubectl = tool("kubectl")
    built = {}
    for variant in VARIANTS:
        for environment in ENVIRONMENTS:
            fake = Cluster(tmp_path_factory.mktemp(f"{variant.id}-{environment}"))
            fake.bin.mkdir()
            fake.capture.mkdir()
            script = fake.bin / "kubectl"
            script.write_text(f"#!{sys.executable}\n{FAKE}")
            script.chmod(0o755)
            result = nox(
                render(variant),
                "deploy",
                environment,
                "--version",
                "v1.2.3",
                env=fake.env(FAKE_KUSTOMIZE=kubectl, **SECRETS),
            )
            assert result.returncode == 0, result.stdout + result.stderr
            file = fake.capture / "manifests.yaml"
            objects = [o for o in yaml.safe_load_all(file.read_text()) if o]
            built[variant, environment] = Release(variant, environment, file, objects)
    return built


@pytest.fixture(scope="module")
def checkov_results(
    releases: Releases, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[Variant, str], dict[str, list[dict[str, Any]]]]:
    """checkov's findings on every release, from one run over all of them."""
    scan = tmp_path_factory.mktemp("checkov")
    for (variant, environment), built in releases.items():
        shutil.copy(built.file, scan / f"{variant.id}-{environment}.yaml")
    command = [tool("checkov"), "--directory", str(scan), "--framework", "kubernetes"]
    result = subprocess.run(
        [*command, "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    reports = json.loads(result.stdout)
    findings: dict[tuple[Variant, str], dict[str, list[dict[str, Any]]]] = {
        key: {"failed": [], "skipped": []} for key in releases
    }
    by_file = {
        f"/{variant.id}-{environment}.yaml": (variant, environment)
        for variant, environment in releases
    }
    for report in reports if isinstance(reports, list) else [reports]:
        for outcome in ("failed", "skipped"):
            for finding in report["results"][f"{outcome}_checks"]:
                findings[by_file[finding["file_path"]]][outcome].append(finding)
    return findings


validate_releases = [
    pytest.param(variant, environment, marks=pytest.mark.validate, id=f"{variant.id}-{environment}")
    for variant in VARIANTS
    for environment in ENVIRONMENTS
]
each_release = pytest.mark.parametrize(("variant", "environment"), validate_releases)


@pytest.mark.validate
@variants
def test_overlays_and_cluster_setup_build_with_kustomize(
    render: Render, variant: Variant, tmp_path: Path
) -> None:
    manifests = tmp_path / "k8s"
    shutil.copytree(render(variant) / "deploy/k8s", manifests)
    shutil.copy(manifests / "base/secret.env.example", manifests / "base/secret.env")
    for directory in ("overlays/staging", "overlays/production", "cluster"):
        result = subprocess.run(
            [tool("kubectl"), "kustomize", str(manifests / directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
        assert kinds >= ({"Namespace", "ClusterIssuer"} if directory == "cluster" else WORKLOADS)


@pytest.mark.validate
@variants
def test_cluster_setup_makes_restricted_namespaces(render: Render, variant: Variant) -> None:
    import kubernetes_validate

    output = subprocess.run(
        [tool("kubectl"), "kustomize", str(render(variant) / "deploy/k8s/cluster")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(output) if doc]
    for doc in objects:
        if (doc["apiVersion"], doc["kind"]) not in CRDS:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    namespaces = {
        o["metadata"]["name"]: o["metadata"]["labels"] for o in objects if o["kind"] == "Namespace"
    }
    assert set(namespaces) == {f"{SLUG}-{environment}" for environment in ENVIRONMENTS}
    for labels in namespaces.values():
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@each_release
def test_release_objects_match_the_kubernetes_schemas(
    releases: Releases, variant: Variant, environment: str
) -> None:
    import kubernetes_validate

    for doc in releases[variant, environment].objects:
        assert (doc["apiVersion"], doc["kind"]) not in CRDS, "a release applies no custom resource"
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@each_release
def test_release_passes_checkov(
    checkov_results: dict[tuple[Variant, str], dict[str, list[dict[str, Any]]]],
    variant: Variant,
    environment: str,
) -> None:
    verdict = checkov_results[variant, environment]
    assert [(f["check_id"], f["resource"]) for f in verdict["failed"]] == []
    # Every exception is a checkov.io/skip annotation with its reason, in the manifest.
    for finding in verdict["skipped"]:
        assert len(finding["check_result"].get("suppress_comment", "")) > 30, finding["check_id"]


@each_release
def test_every_pod_meets_the_restricted_pod_security_standard(
    releases: Releases, variant: Variant, environment: str
) -> None:
    found = dict(pods(releases[variant, environment].objects))
    assert set(found) == {*deployments(variant), f"{SLUG}-migrate-v1-2-3"}
    for name, pod in found.items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == 10001, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod), name
        assert {volume["name"]: set(volume) - {"name"} for volume in pod["volumes"]} == {
            "tmp": {"emptyDir"}
        }, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert "privileged" not in security, name
            assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}], name


@each_release
def test_every_container_has_probes_and_resources(
    releases: Releases, variant: Variant, environment: str
) -> None:
    built = releases[variant, environment]
    for name, pod in pods(built.objects):
        for container in pod["containers"]:
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, name
            if name in deployments(variant):
                assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container), name
    api = built.one("Deployment", f"{SLUG}-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["ports"] == [{"name": "http", "containerPort": 8000}]
    paths = {
        probe: api[probe]["httpGet"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {
        "startupProbe": {"path": "/health", "port": "http"},
        "readinessProbe": {"path": "/health/ready", "port": "http"},
        "livenessProbe": {"path": "/health", "port": "http"},
    }
    if variant.features.worker:
        worker = built.one("Deployment", f"{SLUG}-worker")["spec"]["template"]["spec"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = worker["containers"][0][probe]["exec"]["command"]
            assert command == [SLUG, "healthcheck", "--worker"]


@each_release
def test_migration_job_runs_the_releases_image_and_the_images_migration(
    render: Render, releases: Releases, variant: Variant, environment: str
) -> None:
    built = releases[variant, environment]
    compose = yaml.safe_load((render(variant) / "compose.yaml").read_text())["services"]
    job = built.one("Job", f"{SLUG}-migrate-v1-2-3")
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    [api] = built.one("Deployment", f"{SLUG}-api")["spec"]["template"]["spec"]["containers"]
    assert migrate["image"] == api["image"] == f"{IMAGE}:v1.2.3"
    # compose.yaml runs the image's migration and worker commands locally: the same ones here.
    assert migrate["args"] == compose["migrate"]["command"]
    assert "command" not in migrate
    assert "command" not in api
    assert "args" not in api
    if variant.features.worker:
        [worker] = built.one("Deployment", f"{SLUG}-worker")["spec"]["template"]["spec"][
            "containers"
        ]
        assert worker["image"] == api["image"]
        assert worker["args"] == compose["worker"]["command"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["activeDeadlineSeconds"] > 0


@each_release
def test_release_wiring(releases: Releases, variant: Variant, environment: str) -> None:
    built = releases[variant, environment]
    names = {(o["kind"], o["metadata"]["name"]) for o in built.objects}
    for obj in built.objects:
        assert obj["metadata"]["namespace"] == f"{SLUG}-{environment}", obj["metadata"]["name"]
    # The autoscaler scales a Deployment that exists, and owns its replica count.
    [hpa] = built.of("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert target["apiVersion"] == "apps/v1"
    assert ("Deployment", target["name"]) in names
    assert "replicas" not in built.one("Deployment", target["name"])["spec"]
    # Services, the PodDisruptionBudget and network policies select pods that exist.
    templates = [o["spec"]["template"]["metadata"]["labels"] for o in built.of("Deployment")]
    selectors = [s["spec"]["selector"] for s in built.of("Service")]
    selectors += [p["spec"]["selector"]["matchLabels"] for p in built.of("PodDisruptionBudget")]
    selectors += [p["spec"]["podSelector"]["matchLabels"] for p in built.of("NetworkPolicy")]
    for selector in selectors:
        assert any(selector.items() <= labels.items() for labels in templates), selector
    # HTTPS for the environment's host, to the api Service, with a cert-manager certificate.
    [ingress] = built.of("Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {
        "cert-manager.io/cluster-issuer": "letsencrypt",
        "acme.cert-manager.io/http01-edit-in-place": "true",
    }
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == HOSTS[environment]
    assert ingress["spec"]["tls"][0]["hosts"] == [HOSTS[environment]]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert ("Service", backend["name"]) in names
    # Pods stop within their grace period: preStop sleep, then SHUTDOWN_TIMEOUT_SECONDS.
    [config] = built.of("ConfigMap")
    assert config["data"]["ENVIRONMENT"] == environment
    shutdown = int(config["data"]["SHUTDOWN_TIMEOUT_SECONDS"])
    for deployment in built.of("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        pre_stop = [c.get("lifecycle", {}).get("preStop", {}) for c in pod["containers"]]
        sleep = max(hook.get("sleep", {}).get("seconds", 0) for hook in pre_stop)
        assert pod["terminationGracePeriodSeconds"] > sleep + shutdown
    # The Secret holds exactly the keys of secret.env.example, from the environment.
    [secret] = built.of("Secret")
    keys = {"DATABASE_URL", "API_KEY"} | ({"REDIS_URL"} if variant.features.redis else set())
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        key: SECRETS[key] for key in keys
    }


@each_release
def test_network_policies_admit_the_ingress_controller_and_the_managed_services(
    releases: Releases, variant: Variant, environment: str
) -> None:
    policies = {
        p["metadata"]["name"]: p["spec"] for p in releases[variant, environment].of("NetworkPolicy")
    }
    default, api = policies[f"{SLUG}-default"], policies[f"{SLUG}-api"]
    assert default["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": SLUG}
    assert default["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in default
    ports = {
        (port["protocol"], port["port"]) for rule in default["egress"] for port in rule["ports"]
    }
    expected = {("UDP", 53), ("TCP", 53), ("TCP", 5432)}
    assert ports == expected | ({("TCP", 6379)} if variant.features.redis else set())
    [rule] = api["ingress"]
    [peer] = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "nginx-ingress"
    }
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "nginx-ingress"}


@pytest.mark.validate
def test_environments_differ_only_where_the_overlays_say(releases: Releases) -> None:
    staging, production = (releases[FULL, environment] for environment in ENVIRONMENTS)
    assert {
        (o["kind"], o["metadata"]["name"])
        for o in staging.objects
        if o["kind"] not in {"ConfigMap", "Secret"}
    } == {
        (o["kind"], o["metadata"]["name"])
        for o in production.objects
        if o["kind"] not in {"ConfigMap", "Secret"}
    }
    bounds = {
        release.environment: (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        for release in (staging, production)
        for hpa in release.of("HorizontalPodAutoscaler")
    }
    assert bounds["staging"][1] < bounds["production"][1]
    workers = {
        release.environment: release.one("Deployment", f"{SLUG}-worker")["spec"]["replicas"]
        for release in (staging, production)
    }
    assert workers == {"staging": 1, "production": 2}
