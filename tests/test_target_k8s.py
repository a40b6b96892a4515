"""The k8s target: release plans, releases against the shared fake cluster, and the manifests.

The fast tier reads dry-run plans and runs real releases against tests/fakes/k8s.py, a stateful
cluster whose manifests the real kustomize builds. The validate tier releases every variant to
that cluster and checks the objects it then holds: kubernetes-validate, checkov, the restricted
Pod Security Standard, probes, resources, the migration Job and the release's labels.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Render
from .deploy import commands, dry_run, nox
from .fakes import Fakes, artifact, k8s
from .matrix import QUESTIONS, WITH_SERVICES, Variant, full_variant, variants_of

SLUG = k8s.SLUG
IMAGE = k8s.IMAGE
DOMAIN = "api.example.com"
ENVIRONMENTS = ["staging", "production"]
HOSTS = {"staging": f"staging.{DOMAIN}", "production": DOMAIN}
FULL = full_variant("k8s")
# The full variant with the services search and memory.
[SERVICES] = [variant for variant in WITH_SERVICES if variant.deploy_target == "k8s"]
VARIANTS = [*variants_of("k8s"), SERVICES]
VERSION_LABEL = "app.kubernetes.io/version"

variants = pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.id)
environments = pytest.mark.parametrize("environment", ENVIRONMENTS)


def argv(plan: str) -> list[list[str]]:
    """The commands of a plan, split into arguments."""
    return [shlex.split(command) for command in commands(plan)]


def position(calls: list[list[str]], *words: str) -> int:
    """The index of the first call that has every one of `words` among its arguments."""
    found = [i for i, call in enumerate(calls) if all(word in call for word in words)]
    assert found, f"no call has {words}:\n" + "\n".join(map(shlex.join, calls))
    return found[0]


def matching(calls: list[list[str]], *words: str) -> list[list[str]]:
    """The calls that have every one of `words` among their arguments."""
    return [call for call in calls if all(word in call for word in words)]


def components(variant: Variant) -> list[str]:
    """The components of a variant, in the order a release switches them: the worker, the
    services by name, the api."""
    return (["worker"] if variant.features.worker else []) + sorted(variant.services) + ["api"]


def others(variant: Variant) -> str:
    """The selector of what a release applies before it migrates: all but the components."""
    return (
        f"app.kubernetes.io/component notin ({','.join(sorted([*components(variant), 'migrate']))})"
    )


def namespace(environment: str) -> str:
    return f"--namespace={SLUG}-{environment}"


# ---------------------------------------------------------------------------------------------
# Fast tier: plans


@environments
def test_deploy_plan_builds_locks_migrates_then_rolls_out_worker_first(
    render: Render, environment: str
) -> None:
    plan = dry_run(render(FULL), "deploy", environment, "--version", "v1.2.3")
    calls = argv(plan)
    where = namespace(environment)
    job = f"{SLUG}-migrate-v1-2-3"
    order = [
        position(calls, "kustomize", f"deploy/k8s/overlays/{environment}"),
        position(calls, "config", "current-context"),
        position(calls, "version"),
        position(calls, "create", "--filename=-", where),
        position(calls, "get", "configmap", f"{SLUG}-releases", where),
        position(calls, "apply", "--filename=-", f"--selector={others(FULL)}"),
        position(calls, "delete", "job", job, where, "--ignore-not-found"),
        position(calls, "apply", "--selector=app.kubernetes.io/component=migrate"),
        position(calls, "wait", f"job/{job}", "--for=jsonpath={.status.conditions[0].status}=True"),
        position(calls, "logs", f"--selector=batch.kubernetes.io/job-name={job}"),
        position(calls, "wait", f"job/{job}", "--for=condition=Complete"),
        position(calls, "apply", "--selector=app.kubernetes.io/component=worker"),
        position(calls, "rollout", "status", f"deployment/{SLUG}-worker", where),
        position(calls, "apply", "--selector=app.kubernetes.io/component=api"),
        position(calls, "rollout", "status", f"deployment/{SLUG}-api", where),
    ]
    assert order == sorted(order)
    assert [call[:2] for call in calls].count(["kubectl", "kustomize"]) == 2
    # The history records the release once every component serves it; then the Lease goes.
    record, unlock = calls[-2:]
    assert record[:3] == ["kubectl", "apply", "--server-side"]
    assert record[-1] == "--filename=-"
    assert unlock[:4] == ["kubectl", "delete", "lease", f"{SLUG}-release"]
    assert matching(calls, "rollout", "undo") == []
    assert matching(calls, "patch") == []
    # The release's kustomization: image tag, migration Job and version label, on the overlay.
    assert "- overlay.yaml" in plan
    assert f"- name: {IMAGE}" in plan
    assert 'newTag: "v1.2.3"' in plan
    assert f"value: {job}" in plan
    assert f'{VERSION_LABEL}: "v1.2.3"' in plan
    assert "checksum/secrets: <sha256 of the values>" in plan
    assert "needs: DATABASE_URL set, REDIS_URL set, API_KEY set" in plan


@variants
def test_deploy_plan_rolls_out_the_variants_components(render: Render, variant: Variant) -> None:
    plan = dry_run(render(variant), "deploy", "production", "--version", "sha-abc1234")
    calls = argv(plan)
    rolled = [call[3] for call in matching(calls, "rollout", "status")]
    assert rolled == [f"deployment/{SLUG}-{component}" for component in components(variant)]
    applied = [call[-1] for call in matching(calls, "apply") if "component" in call[-1]]
    assert applied == [
        f"--selector={others(variant)}",
        *(f"--selector=app.kubernetes.io/component={c}" for c in ["migrate", *components(variant)]),
    ]
    # A dry run builds nothing: it names the base's components.
    assert f"components, as deploy/k8s/base has them: {', '.join(components(variant))}" in plan


@environments
def test_rollback_plan_switches_images_worker_first_and_nothing_else(
    render: Render, environment: str
) -> None:
    plan = dry_run(render(FULL), "rollback", environment)
    calls = argv(plan)
    where = namespace(environment)
    order = [
        position(calls, "create", "--filename=-", where),
        position(calls, "get", "configmap", f"{SLUG}-releases", where),
        position(calls, "patch", f"deployment/{SLUG}-worker", where),
        position(calls, "rollout", "status", f"deployment/{SLUG}-worker", where),
        position(calls, "patch", f"deployment/{SLUG}-api", where),
        position(calls, "rollout", "status", f"deployment/{SLUG}-api", where),
        position(calls, "apply", "--filename=-"),
        position(calls, "delete", "lease", f"{SLUG}-release", where),
    ]
    assert order == sorted(order)
    for component in components(FULL):
        [patch] = matching(calls, "patch", f"deployment/{SLUG}-{component}")
        change = json.loads(patch[-1].removeprefix("--patch="))
        labels = {VERSION_LABEL: "<previous release>"}
        container = {"name": component, "image": f"{IMAGE}:<previous release>"}
        assert change == {
            "metadata": {"labels": labels},
            "spec": {
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}
            },
        }
    # No undo (it toggles between two revisions), no migration, no configuration, no Secret.
    assert matching(calls, "rollout", "undo") == []
    assert matching(calls, "kustomize") == []
    assert len(matching(calls, "apply")) == 1


def test_rollback_plan_to_a_version_switches_to_its_images(render: Render) -> None:
    calls = argv(dry_run(render(FULL), "rollback", "production", "1.4.0"))
    patches = [call[-1] for call in matching(calls, "patch")]
    assert [f"{IMAGE}:1.4.0" in patch for patch in patches] == [True, True]


@pytest.mark.parametrize("version", ["v1/2", "v1-", "v" * 64])
def test_deploy_refuses_a_version_that_is_no_image_tag(render: Render, version: str) -> None:
    result = nox(render(FULL), "deploy", "staging", "--version", version, "--dry-run")
    assert result.returncode != 0
    assert f"deploy failed: {version!r} is not an image tag" in result.stdout


# ---------------------------------------------------------------------------------------------
# Fast tier: releases against the fake cluster


@dataclass
class Cluster:
    """A project and the fake cluster it releases to."""

    fakes: Fakes
    project: Path
    env: dict[str, str]
    variant: Variant = FULL

    def release(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run `nox -s deploy|rollback -- ARGS`' engine to the end."""
        return self.fakes.release(self.project, *args, env={**self.env, **env})

    def deploy(self, version: str, *, publish: bool = True, **env: str) -> str:
        """Push the version's image, deploy it, and return what the release printed."""
        if publish:
            k8s.publish(self.fakes, self.project, version)
        result = self.release("deploy", "staging", "--version", version, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    def state(self) -> dict[str, Any]:
        return self.fakes.state()

    def calls(self) -> list[list[str]]:
        """Every kubectl call so far, with `kubectl` first."""
        return [["kubectl", *call] for call in self.fakes.calls("kubectl")]

    def deployment(self, component: str, environment: str = "staging") -> dict[str, Any]:
        found = k8s.get(self.state(), f"{SLUG}-{environment}", "Deployment", f"{SLUG}-{component}")
        assert found is not None
        return found

    def serving(self, environment: str = "staging") -> dict[str, str | None]:
        """The version each component serves."""
        state = self.state()
        return {
            component: (
                k8s.serving(state, f"{SLUG}-{environment}", f"{SLUG}-{component}") or {}
            ).get("version")
            for component in components(self.variant)
        }

    def history(self) -> list[tuple[str, str]]:
        return [(e["action"], e["version"]) for e in k8s.history(self.state(), f"{SLUG}-staging")]


def cluster_for(project: Path, root: Path, *, variant: Variant = FULL, **setup: str) -> Cluster:
    fakes = Fakes(root, "k8s", ("kubectl", "docker", "kind"))
    return Cluster(fakes, project, k8s.setup(fakes, **setup), variant)


@pytest.fixture
def cluster(render: Render, tmp_path: Path) -> Cluster:
    """The full variant and an empty fake cluster."""
    return cluster_for(render(FULL), tmp_path / "cluster")


@pytest.fixture
def with_services(render: Render, tmp_path: Path) -> Cluster:
    """The full variant with the services search and memory, and an empty fake cluster."""
    return cluster_for(render(SERVICES), tmp_path / "cluster", variant=SERVICES)


def everywhere(version: str | None, variant: Variant = FULL) -> dict[str, str | None]:
    return dict.fromkeys(components(variant), version)


def switched(calls: list[list[str]], *words: str) -> list[str]:
    """The components whose Deployment the calls with `words` (patch, rollout status) name."""
    return [
        word.removeprefix(f"deployment/{SLUG}-")
        for call in matching(calls, *words)
        for word in call
        if word.startswith("deployment/")
    ]


def test_deploys_record_releases_and_label_what_runs(cluster: Cluster) -> None:
    cluster.deploy("v1")
    output = cluster.deploy("v2")
    assert "\ndeploy of staging done.\n" in output
    assert cluster.serving() == everywhere("v2")
    [first, second] = k8s.history(cluster.state(), f"{SLUG}-staging")
    assert (first["number"], first["previous"]) == (1, None)
    assert (second["action"], second["version"], second["previous"]) == ("deploy", "v2", 1)
    assert second["artifacts"] == dict.fromkeys(components(FULL), f"{IMAGE}:v2")
    assert second["revision"] == "0001"
    for component in components(FULL):
        deployment = cluster.deployment(component)
        template = deployment["spec"]["template"]
        assert deployment["metadata"]["labels"][VERSION_LABEL] == "v2"
        assert template["metadata"]["labels"][VERSION_LABEL] == "v2"
        assert template["spec"]["containers"][0]["image"] == f"{IMAGE}:v2"
    # One release at a time, and no longer than the release.
    assert k8s.get(cluster.state(), f"{SLUG}-staging", "Lease", f"{SLUG}-release") is None


def test_the_release_writes_the_secret_from_the_environment_and_nowhere_else(
    cluster: Cluster,
) -> None:
    output = cluster.deploy("v1")
    state = cluster.state()
    assert k8s.secret_values(state, f"{SLUG}-staging") == k8s.SECRETS
    for secret in k8s.SECRETS.values():
        assert secret not in output
    # It reached kubectl through its standard input, never through a file.
    apply = matching(cluster.calls(), "apply", "--filename=-", "--server-side")[0]
    assert f"--selector={others(FULL)}" in apply
    builds = matching(cluster.calls(), "kustomize")
    scratch = Path(builds[-1][2]).parent
    assert not scratch.exists(), "the release's scratch directory outlived the deploy"
    assert not list(cluster.project.rglob("secret.env"))
    checksum = hashlib.sha256(json.dumps(k8s.SECRETS, sort_keys=True).encode()).hexdigest()
    for component in components(FULL):
        annotations = cluster.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"checksum/secrets": checksum}


def test_a_rotated_secret_restarts_the_pods_and_a_rollback_keeps_it(cluster: Cluster) -> None:
    namespace_ = f"{SLUG}-staging"
    cluster.deploy("v1")
    before = len(k8s.replica_sets(cluster.state(), namespace_, f"{SLUG}-api"))
    cluster.deploy("v1", API_KEY="r" * 40)  # the same release, with a new key
    assert k8s.secret_values(cluster.state(), namespace_)["API_KEY"] == "r" * 40
    assert len(k8s.replica_sets(cluster.state(), namespace_, f"{SLUG}-api")) == before + 1
    cluster.deploy("v2", API_KEY="r" * 40)
    rotated = cluster.deployment("api")["spec"]["template"]["metadata"]["annotations"]
    back = cluster.release("rollback", "staging")
    assert back.returncode == 0, back.stdout + back.stderr
    assert cluster.serving() == everywhere("v1")
    # The rollback changed images, not the Secret nor the pods' checksum of it.
    assert k8s.secret_values(cluster.state(), namespace_)["API_KEY"] == "r" * 40
    assert cluster.deployment("api")["spec"]["template"]["metadata"]["annotations"] == rotated
    assert cluster.history()[-1] == ("rollback", "v1")


def test_a_migration_that_fails_stops_the_deploy_before_any_rollout(cluster: Cluster) -> None:
    cluster.deploy("v1")
    before = len(cluster.calls())
    k8s.publish(cluster.fakes, cluster.project, "v2")
    cluster.fakes.inject("fail", match="--for=condition=Complete", output="condition not met")
    result = cluster.release("deploy", "staging", "--version", "v2")
    job = f"{SLUG}-migrate-v2"
    assert result.returncode == 1
    assert (
        f"the migration Job {job} failed (its log is above); v1 serves as before" in result.stderr
    )
    calls = cluster.calls()[before:]
    assert position(calls, "logs", f"--selector=batch.kubernetes.io/job-name={job}") < position(
        calls, "wait", f"job/{job}", "--for=condition=Complete"
    )
    assert matching(calls, "--selector=app.kubernetes.io/component=worker") == []
    assert cluster.serving() == everywhere("v1")
    assert cluster.history() == [("deploy", "v1")]


def test_a_migration_whose_image_is_missing_never_finishes(cluster: Cluster) -> None:
    cluster.deploy("v1")
    result = cluster.release("deploy", "staging", "--version", "v2")  # CI pushed no v2
    assert (
        f"the migration Job {SLUG}-migrate-v2 did not finish; v1 serves as before" in result.stderr
    )
    assert len(matching(cluster.calls(), "rollout", "status", f"deployment/{SLUG}-worker")) == 1
    assert cluster.serving() == everywhere("v1")


def test_an_api_that_does_not_become_ready_puts_back_the_serving_release(
    cluster: Cluster,
) -> None:
    cluster.deploy("v1")
    k8s.publish(cluster.fakes, cluster.project, "v2")
    cluster.fakes.update(lambda s: k8s.break_deployment(s, f"{SLUG}-staging", f"{SLUG}-api"))
    result = cluster.release("deploy", "staging", "--version", "v2")
    assert result.returncode == 1
    assert (
        "deploy failed: the api did not become ready with v2 (its pods are listed above); "
        "v1 serves as before." in result.stderr
    )
    assert "CrashLoopBackOff" in result.stdout
    calls = cluster.calls()
    failed = position(calls, "rollout", "status", f"deployment/{SLUG}-api")
    listed = position(calls, "get", "pods")
    put_back = [
        position(calls, "patch", f"deployment/{SLUG}-{component}")
        for component in ("api", "worker")
    ]
    assert failed < listed < put_back[0] < put_back[1]
    assert cluster.serving() == everywhere("v1")
    for component in components(FULL):
        deployment = cluster.deployment(component)
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:v1"
        assert deployment["metadata"]["labels"][VERSION_LABEL] == "v1"
        # Going back reused the ReplicaSet that served: no pod of a template never released.
        sets = k8s.replica_sets(cluster.state(), f"{SLUG}-staging", f"{SLUG}-{component}")
        assert len(sets) == 2
        assert sets[-1]["template"]["metadata"]["labels"][VERSION_LABEL] == "v1"
    assert cluster.history() == [("deploy", "v1")]
    assert matching(calls, "rollout", "undo") == []


def test_a_release_switches_the_worker_the_services_by_name_then_the_api(
    with_services: Cluster,
) -> None:
    cluster = with_services
    output = cluster.deploy("v1")
    assert "    components: worker, memory, search, api\n" in output
    assert switched(cluster.calls(), "rollout", "status") == ["worker", "memory", "search", "api"]
    assert cluster.serving() == everywhere("v1", SERVICES)
    # One image for every component, each container named after its component.
    for component in components(SERVICES):
        deployment = cluster.deployment(component)
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert (container["name"], container["image"]) == (component, f"{IMAGE}:v1")
        assert deployment["metadata"]["labels"][VERSION_LABEL] == "v1"
        assert deployment["spec"]["template"]["metadata"]["labels"][VERSION_LABEL] == "v1"
    [entry] = k8s.history(cluster.state(), f"{SLUG}-staging")
    assert entry["artifacts"] == dict.fromkeys(components(SERVICES), f"{IMAGE}:v1")
    apply = matching(cluster.calls(), "apply", "--filename=-", "--server-side")[0]
    assert f"--selector={others(SERVICES)}" in apply


def test_a_rollback_switches_the_services_back_with_the_rest(with_services: Cluster) -> None:
    cluster = with_services
    cluster.deploy("v1")
    cluster.deploy("v2")
    since = len(cluster.calls())
    back = cluster.release("rollback", "staging")
    assert back.returncode == 0, back.stdout + back.stderr
    assert switched(cluster.calls()[since:], "patch") == components(SERVICES)
    assert cluster.serving() == everywhere("v1", SERVICES)
    assert cluster.history()[-1] == ("rollback", "v1")


def test_a_service_that_does_not_become_ready_puts_back_every_component_switched(
    with_services: Cluster,
) -> None:
    cluster = with_services
    cluster.deploy("v1")
    since = len(cluster.calls())
    k8s.publish(cluster.fakes, cluster.project, "v2")
    cluster.fakes.update(lambda s: k8s.break_deployment(s, f"{SLUG}-staging", f"{SLUG}-search"))
    result = cluster.release("deploy", "staging", "--version", "v2")
    assert result.returncode == 1
    assert (
        "deploy failed: the search did not become ready with v2 (its pods are listed above); "
        "v1 serves as before." in result.stderr
    )
    calls = cluster.calls()[since:]
    # The api never got v2; the search, the memory and the worker went back, last switched first.
    assert switched(calls, "apply", "--selector=app.kubernetes.io/component=api") == []
    assert switched(calls, "patch") == ["search", "memory", "worker"]
    assert cluster.serving() == everywhere("v1", SERVICES)
    assert cluster.history() == [("deploy", "v1")]


def test_a_service_added_after_a_release_keeps_serving_when_rolled_back_to_it(
    render: Render, tmp_path: Path
) -> None:
    before = cluster_for(render(FULL), tmp_path / "cluster")
    before.deploy("v1")
    after = replace(before, project=render(SERVICES), variant=SERVICES)
    after.deploy("v2")
    since = len(after.calls())
    back = after.release("rollback", "staging")
    assert back.returncode == 0, back.stdout + back.stderr
    for service in ("memory", "search"):
        assert f"the {service} keeps serving {IMAGE}:v2: v1 had no {service}" in back.stdout
    assert switched(after.calls()[since:], "patch") == ["worker", "api"]
    assert after.serving() == {"worker": "v1", "memory": "v2", "search": "v2", "api": "v1"}
    # The history records what runs after the rollback.
    last = k8s.history(after.state(), f"{SLUG}-staging")[-1]
    assert (last["action"], last["version"]) == ("rollback", "v1")
    assert last["artifacts"] == {
        "worker": f"{IMAGE}:v1",
        "api": f"{IMAGE}:v1",
        "memory": f"{IMAGE}:v2",
        "search": f"{IMAGE}:v2",
    }


def test_a_first_release_that_fails_records_nothing(cluster: Cluster) -> None:
    cluster.fakes.update(
        lambda s: s["images"].__setitem__(
            f"{IMAGE}:v1", {**artifact(cluster.project, "v1"), "healthy": False}
        )
    )
    result = cluster.release("deploy", "staging", "--version", "v1")
    assert result.returncode == 1
    assert "the worker did not become ready with v1" in result.stderr
    assert "nothing serves as before" in result.stderr
    assert matching(cluster.calls(), "rollout", "undo", f"deployment/{SLUG}-worker")
    assert cluster.history() == []


def test_rollbacks_go_to_a_named_release_and_refuse_an_unknown_one(cluster: Cluster) -> None:
    for version in ("v1", "v2", "v3"):
        cluster.deploy(version)
    back = cluster.release("rollback", "staging", "v1")
    assert back.returncode == 0, back.stdout + back.stderr
    assert cluster.serving() == everywhere("v1")
    last = k8s.history(cluster.state(), f"{SLUG}-staging")[-1]
    assert (last["action"], last["restores"], last["previous"]) == ("rollback", 1, 3)
    assert matching(cluster.calls(), "kustomize")[6:] == []  # a rollback builds nothing
    patches = len(matching(cluster.calls(), "patch"))
    unknown = cluster.release("rollback", "staging", "0.9.0")
    assert unknown.returncode == 1
    assert "0.9.0 was never released to staging; its history knows v1, v3, v2" in unknown.stderr
    assert len(matching(cluster.calls(), "patch")) == patches


def lease_record(**changes: Any) -> dict[str, Any]:
    """The Lease another release holds: a live one on another machine, unless changed."""
    record = {
        "holder": "ci@elsewhere (pid 1)",
        "host": "elsewhere",
        "pid": 1,
        "action": "deploy",
        "version": "v9",
        "since": "2030-01-01T00:00:00+00:00",
        "expires": "2999-01-01T00:00:00+00:00",
        **changes,
    }
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": f"{SLUG}-release",
            "namespace": f"{SLUG}-staging",
            "annotations": {f"{SLUG}/holder": json.dumps(record)},
        },
        "spec": {"holderIdentity": record["holder"]},
    }


def test_a_release_refuses_while_another_holds_the_lease(cluster: Cluster) -> None:
    cluster.fakes.update(lambda s: k8s.write(s["k8s"], lease_record()))
    for args in (("deploy", "staging", "--version", "v1"), ("rollback", "staging")):
        k8s.publish(cluster.fakes, cluster.project, "v1")
        result = cluster.release(*args)
        assert result.returncode == 1
        assert (
            "staging is being released by ci@elsewhere (pid 1), deploy of v9 since "
            "2030-01-01T00:00:00+00:00. One release at a time" in result.stderr
        )
    assert matching(cluster.calls(), "apply") == []
    assert matching(cluster.calls(), "replace") == []
    lease = k8s.get(cluster.state(), f"{SLUG}-staging", "Lease", f"{SLUG}-release")
    assert lease is not None
    assert "ci@elsewhere" in lease["metadata"]["annotations"][f"{SLUG}/holder"]


def test_a_lease_nobody_renewed_is_taken_over(cluster: Cluster) -> None:
    expired = lease_record(expires="2000-01-01T00:00:00+00:00")
    cluster.fakes.update(lambda s: k8s.write(s["k8s"], expired))
    output = cluster.deploy("v1")
    assert "taking over a lease whose release died" in output
    [replace] = matching(cluster.calls(), "replace", "--filename=-")
    assert f"--namespace={SLUG}-staging" in replace
    assert cluster.serving() == everywhere("v1")
    assert k8s.get(cluster.state(), f"{SLUG}-staging", "Lease", f"{SLUG}-release") is None


def with_external_secrets(project: Path, directory: Path) -> Path:
    """A copy of the project whose staging overlay takes its Secret from External Secrets."""
    copy = directory / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".nox", ".venv"))
    overlay = copy / "deploy/k8s/overlays/staging/kustomization.yaml"
    text = overlay.read_text().replace(
        "  - ../../components/network-policy\n",
        "  - ../../components/network-policy\n  - ../../components/external-secrets\n",
    )
    overlay.write_text(text)
    return copy


def test_an_overlay_with_external_secrets_leaves_the_secret_to_them(
    render: Render, tmp_path: Path
) -> None:
    cluster = cluster_for(with_external_secrets(render(FULL), tmp_path), tmp_path / "cluster")
    in_store = {key: f"from the store: {key}" for key in k8s.SECRETS}
    cluster.fakes.update(lambda s: s["k8s"]["store"].__setitem__(SLUG, in_store))
    for key in k8s.SECRETS:
        cluster.env.pop(key)
    output = cluster.deploy("v1")
    assert "the overlay's ExternalSecret provides the Secret" in output
    assert matching(cluster.calls(), "--filename=-", "apply")[:-1] == []  # only the history
    assert position(cluster.calls(), "wait", f"secret/{SLUG}-secrets", "--for=create") < position(
        cluster.calls(), "apply", "--selector=app.kubernetes.io/component=migrate"
    )
    assert k8s.secret_values(cluster.state(), f"{SLUG}-staging") == in_store
    assert cluster.serving() == everywhere("v1")
    template = cluster.deployment("api")["spec"]["template"]["metadata"]
    assert "annotations" not in template


def test_an_external_secret_that_finds_nothing_stops_the_deploy(
    render: Render, tmp_path: Path
) -> None:
    cluster = cluster_for(with_external_secrets(render(FULL), tmp_path), tmp_path / "cluster")
    k8s.publish(cluster.fakes, cluster.project, "v1")
    result = cluster.release("deploy", "staging", "--version", "v1")
    assert result.returncode == 1
    assert (
        f"the Secret {SLUG}-secrets does not exist: see why in `kubectl describe externalsecret "
        f"{SLUG}-secrets --namespace={SLUG}-staging`; nothing serves as before." in result.stderr
    )
    assert matching(cluster.calls(), "--selector=app.kubernetes.io/component=migrate") == []


def smoke(cluster: Cluster, *args: str, **env: str) -> str:
    """Run the module behind `nox -s k8s-smoke` against the fake cluster."""
    result = subprocess.run(
        [sys.executable, "-m", "scripts.deploy.k8s", *args],
        cwd=cluster.project,
        env={**cluster.fakes.env, **cluster.env, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


def test_smoke_deploys_to_a_local_cluster_and_reads_readiness(
    render: Render, tmp_path: Path
) -> None:
    cluster = cluster_for(render(FULL), tmp_path, context="kind-dev")
    cluster.env.pop("API_KEY")
    output = smoke(cluster)
    assert "\nk8s-smoke passed.\n" in output, output
    [build] = cluster.fakes.calls("docker")
    [load] = cluster.fakes.calls("kind")
    tag = build[1].removeprefix("--tag=")
    assert tag.startswith(f"{IMAGE}:smoke-")
    assert build == ["build", f"--tag={tag}", str(cluster.project)]
    assert load == ["load", "docker-image", "--name=dev", tag]
    assert 'answer: {"status": "ready"}' in output
    version = tag.rsplit(":", 1)[1]
    assert cluster.serving() == everywhere(version)
    # The staging settings refuse a short API key: the smoke test makes a long one.
    assert len(k8s.secret_values(cluster.state(), f"{SLUG}-staging")["API_KEY"]) == 64


def test_smoke_refuses_a_cluster_that_is_not_local(render: Render, tmp_path: Path) -> None:
    cluster = cluster_for(render(FULL), tmp_path, context="gke_acme_prod")
    output = smoke(cluster)
    assert "k8s-smoke failed: kubectl's current context 'gke_acme_prod' is not a local" in output
    assert cluster.fakes.calls("docker") == []
    assert matching(cluster.calls(), "apply") == []


def test_smoke_dry_run_prints_the_plan(render: Render, tmp_path: Path) -> None:
    cluster = cluster_for(render(FULL), tmp_path)
    output = smoke(cluster, "--dry-run")
    calls = argv(output)
    assert "\nk8s-smoke planned.\n" in output, output
    assert position(calls, "docker", "build") < position(calls, "kustomize")
    assert position(calls, "rollout", "status") < position(calls, "port-forward")
    assert "GET http://127.0.0.1:" in output
    assert cluster.fakes.calls() == []


# ---------------------------------------------------------------------------------------------
# Fast tier: the settings the manifests state for the proxy in front of the api


def env_file(path: Path) -> dict[str, str]:
    """The variables of an env file, without its comments."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_the_api_trusts_forwarded_headers_from_private_networks_only(render: Render) -> None:
    config = env_file(render(FULL) / "deploy/k8s/base/config.env")
    networks = [ipaddress.ip_network(n) for n in config["FORWARDED_ALLOW_IPS"].split(",")]
    assert networks, "FORWARDED_ALLOW_IPS names no network"
    for network in networks:
        assert network.is_private, network  # never `*`, never a public address
    client = ipaddress.ip_address("203.0.113.9")
    assert not any(client in network for network in networks)


def test_the_ingress_admits_the_bodies_the_api_admits(render: Render) -> None:
    project = render(FULL)
    ingress = yaml.safe_load((project / "deploy/k8s/components/ingress/ingress.yaml").read_text())
    limit = ingress["metadata"]["annotations"]["nginx.org/client-max-body-size"]
    # The api's default MAX_BODY_BYTES, in nginx's MiB: both come from this copier.yml value.
    assert limit == f"{QUESTIONS['max_body_mib']['default']}m"


# ---------------------------------------------------------------------------------------------
# Validate tier: what a release leaves in the cluster, built by the real kustomize

WORKLOADS = {"Deployment", "Job"}
# Kinds whose schemas come with a CRD, not with Kubernetes.
CRDS = {("cert-manager.io/v1", "ClusterIssuer"), ("external-secrets.io/v1", "ExternalSecret")}
KUBERNETES = "1.33.0"


def tool(name: str) -> str:
    """The path of a validator; the validate dependency group installs them."""
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: run the tests with `nox -s validate`"
    return path


@dataclass(frozen=True)
class Release:
    """The objects one release of a variant leaves in its namespace."""

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


def as_applied(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what the cluster added to it (its resourceVersion and status)."""
    metadata = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}


@pytest.fixture(scope="module")
def releases(render: Render, tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """Every variant's first release to each environment, as the fake cluster then holds it."""
    built = {}
    for variant in VARIANTS:
        project = render(variant)
        cluster = cluster_for(project, tmp_path_factory.mktemp(f"{variant.id}-cluster"))
        k8s.publish(cluster.fakes, project, "v1.2.3")
        for environment in ENVIRONMENTS:
            result = cluster.release("deploy", environment, "--version", "v1.2.3")
            assert result.returncode == 0, result.stdout + result.stderr
            state = cluster.state()
            objects = [as_applied(o) for o in k8s.objects(state, f"{SLUG}-{environment}")]
            file = tmp_path_factory.mktemp("applied") / f"{variant.id}-{environment}.yaml"
            file.write_text(yaml.safe_dump_all(objects))
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


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects kustomize builds from a directory."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.validate
@variants
def test_overlays_and_cluster_setup_build_from_a_clean_checkout(
    render: Render, variant: Variant
) -> None:
    manifests = render(variant) / "deploy/k8s"
    assert not (manifests / "base/secret.env").exists()
    for environment in ENVIRONMENTS:
        objects = kustomize(manifests / "overlays" / environment)
        assert {o["kind"] for o in objects} >= WORKLOADS
        # The pods' Secret comes from the environment or a secret manager, never from git.
        assert "Secret" not in {o["kind"] for o in objects}
    cluster = {o["kind"] for o in kustomize(manifests / "cluster")}
    assert cluster >= {"Namespace", "ClusterIssuer"}


@pytest.mark.validate
def test_the_external_secrets_component_makes_the_pods_secret(
    render: Render, tmp_path: Path
) -> None:
    project = with_external_secrets(render(FULL), tmp_path)
    objects = kustomize(project / "deploy/k8s/overlays/staging")
    [external] = [o for o in objects if o["kind"] == "ExternalSecret"]
    assert external["apiVersion"] == "external-secrets.io/v1"
    assert external["metadata"]["namespace"] == f"{SLUG}-staging"
    assert external["spec"]["target"]["name"] == f"{SLUG}-secrets"
    assert external["spec"]["secretStoreRef"] == {"kind": "SecretStore", "name": SLUG}
    assert external["spec"]["dataFrom"] == [{"extract": {"key": SLUG}}]
    secret_refs = {
        source["secretRef"]["name"]
        for _, pod in pods(objects)
        for container in pod["containers"]
        for source in container["envFrom"]
        if "secretRef" in source
    }
    assert secret_refs == {f"{SLUG}-secrets"}


def with_components(project: Path, directory: Path, *components: str) -> Path:
    """A copy of the project whose staging overlay also lists these components."""
    copy = directory / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".nox", ".venv"))
    overlay = copy / "deploy/k8s/overlays/staging/kustomization.yaml"
    listed = "".join(f"  - ../../components/{component}\n" for component in components)
    text = overlay.read_text().replace(
        "  - ../../components/network-policy\n", f"  - ../../components/network-policy\n{listed}"
    )
    overlay.write_text(text)
    return copy


@pytest.mark.validate
def test_the_monitoring_component_scrapes_the_metrics_port_and_loads_the_alert_rules(
    render: Render, tmp_path: Path
) -> None:
    project = with_components(render(FULL), tmp_path, "monitoring")
    objects = kustomize(project / "deploy/k8s/overlays/staging")
    [monitor] = [o for o in objects if o["kind"] == "PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == f"{SLUG}-staging"
    assert monitor["metadata"]["labels"] == {"release": "kube-prometheus-stack"}
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    # Jobs are components, as the alert rules name them.
    assert endpoint["relabelings"] == [
        {
            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
            "targetLabel": "job",
        }
    ]
    [rules] = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rules["metadata"]["labels"] == {"release": "kube-prometheus-stack"}
    assert rules["spec"] == yaml.safe_load((project / "monitoring/alerts.yml").read_text())
    [dashboard] = [o for o in objects if o["metadata"]["name"] == f"{SLUG}-dashboard"]
    assert dashboard["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert json.loads(dashboard["data"][f"{SLUG}.json"]) == json.loads(
        (project / "monitoring/dashboard.json").read_text()
    )
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "api",
        "worker",
        *FULL.services,
    }
    for deployment in deployments:
        template = deployment["spec"]["template"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        ports = {port["name"] for port in template["spec"]["containers"][0]["ports"]}
        assert "metrics" in ports, deployment["metadata"]["name"]
    [policy] = [o for o in objects if o["metadata"]["name"] == f"{SLUG}-metrics"]
    assert [port["port"] for port in policy["spec"]["ingress"][0]["ports"]] == ["metrics"]


@pytest.mark.validate
def test_the_backup_component_dumps_the_database_daily_to_object_storage(
    render: Render, tmp_path: Path
) -> None:
    import kubernetes_validate

    project = with_components(render(FULL), tmp_path, "backup")
    [cronjob] = [
        o for o in kustomize(project / "deploy/k8s/overlays/staging") if o["kind"] == "CronJob"
    ]
    kubernetes_validate.validate(cronjob, KUBERNETES, strict=True)
    assert cronjob["metadata"]["namespace"] == f"{SLUG}-staging"
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"]) == ("0 3 * * *", "Etc/UTC")
    assert spec["concurrencyPolicy"] == "Forbid"  # never two dumps at once
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [dump] = pod["initContainers"]
    [upload] = pod["containers"]
    # The dump is read back whole before anything is uploaded; the upload only reads it.
    assert "pg_dump --format=custom" in dump["args"][0]
    assert "&& pg_restore --list" in dump["args"][0]
    assert dump["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": f"{SLUG}-secrets",
        "key": "DATABASE_URL",
    }
    assert upload["args"][0].startswith("aws s3 cp")
    assert upload["envFrom"] == [{"secretRef": {"name": f"{SLUG}-backup-storage"}}]
    assert {"name": "backup", "mountPath": "/backup", "readOnly": True} in upload["volumeMounts"]
    for container in (dump, upload):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["limits"].keys() == {"cpu", "memory"}


def readme_patch(project: Path, heading: str) -> str:
    """The YAML block of the README section `heading`: the patch it tells users to add."""
    section = (project / "README.md").read_text().split(f"### {heading}\n", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section.split("\n### ", 1)[0], re.DOTALL)
    assert match, f"the README section {heading!r} shows no YAML"
    return match.group(1)


@pytest.mark.validate
@pytest.mark.parametrize("allow", ["some addresses", "none"])
def test_the_readmes_patch_restricts_https_egress(
    render: Render, tmp_path: Path, allow: str
) -> None:
    project = with_components(render(FULL), tmp_path)
    patch = readme_patch(project, "Traffic, network policies and metrics")
    if allow == "none":  # as the README says: the same patch, removing the rule
        patch = re.sub(
            r"- op: add\n(\s+)path: /spec/egress/0/to\n.*",
            r"- op: remove\n\1path: /spec/egress/0\n",
            patch,
            flags=re.DOTALL,
        )
    overlay = project / "deploy/k8s/overlays/staging/kustomization.yaml"
    overlay.write_text(overlay.read_text().replace("patches:\n", patch, 1))
    objects = kustomize(project / "deploy/k8s/overlays/staging")
    [https] = [o for o in objects if o["metadata"]["name"] == f"{SLUG}-egress-https"]
    expected = (
        [
            {
                "ports": [{"protocol": "TCP", "port": 443}],
                "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
            }
        ]
        if allow == "some addresses"
        else []
    )
    assert https["spec"].get("egress", []) == expected


@pytest.mark.validate
def test_the_readmes_patch_gives_a_service_a_host_of_its_own(
    render: Render, tmp_path: Path
) -> None:
    project = with_components(render(SERVICES), tmp_path)
    patch = readme_patch(project, "A service on a host of its own")
    overlay = project / "deploy/k8s/overlays/staging/kustomization.yaml"
    overlay.write_text(overlay.read_text().replace("patches:\n", patch, 1))
    [ingress] = [o for o in kustomize(overlay.parent) if o["kind"] == "Ingress"]
    service = SERVICES.services[0]
    host = f"{service}.{QUESTIONS['domain']['default']}"
    assert ingress["spec"]["tls"][0]["hosts"] == [f"staging.{QUESTIONS['domain']['default']}", host]
    [rule] = [rule for rule in ingress["spec"]["rules"] if rule["host"] == host]
    [path] = rule["http"]["paths"]
    assert (path["path"], path["backend"]["service"]["name"]) == ("/", f"{SLUG}-{service}")


@pytest.mark.validate
@variants
def test_cluster_setup_makes_restricted_namespaces(render: Render, variant: Variant) -> None:
    import kubernetes_validate

    objects = kustomize(render(variant) / "deploy/k8s/cluster")
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
    assert set(found) == {*(f"{SLUG}-{c}" for c in components(variant)), f"{SLUG}-migrate-v1-2-3"}
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
    deployments = {f"{SLUG}-{c}" for c in components(variant)}
    for name, pod in pods(built.objects):
        for container in pod["containers"]:
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, name
            if name in deployments:
                assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container), name
    # The api and every service: the same ports, probes and shutdown.
    for component in ["api", *variant.services]:
        pod = built.one("Deployment", f"{SLUG}-{component}")["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["ports"] == [
            {"name": "http", "containerPort": 8000},
            {"name": "metrics", "containerPort": 9000},
        ]
        paths = {
            probe: container[probe]["httpGet"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert paths == {
            "startupProbe": {"path": "/health", "port": "http"},
            "readinessProbe": {"path": "/health/ready", "port": "http"},
            "livenessProbe": {"path": "/health", "port": "http"},
        }, component
        assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}, component
    if variant.features.worker:
        worker = built.one("Deployment", f"{SLUG}-worker")["spec"]["template"]["spec"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = worker["containers"][0][probe]["exec"]["command"]
            assert command == [SLUG, "healthcheck", "--worker"]
    # Every Deployment's replicas spread over the nodes, the worker's included.
    for component in components(variant):
        pod = built.one("Deployment", f"{SLUG}-{component}")["spec"]["template"]["spec"]
        [spread] = pod["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["labelSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": SLUG,
            "app.kubernetes.io/component": component,
        }


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
    # The image's default command serves the api; a service is the same image, its own command.
    for service in variant.services:
        [container] = built.one("Deployment", f"{SLUG}-{service}")["spec"]["template"]["spec"][
            "containers"
        ]
        assert container["image"] == api["image"]
        assert container["args"] == [SLUG, "serve", service]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["activeDeadlineSeconds"] > 0


@pytest.mark.validate
@environments
def test_the_services_pods_read_the_api_key_and_no_other_secret(
    releases: Releases, environment: str
) -> None:
    # ... but DATABASE_URL, for a service that owns tables.
    built = releases[SERVICES, environment]
    assert SERVICES.service_tables, "the variant has a service that owns tables"
    for service in SERVICES.services:
        [container] = built.one("Deployment", f"{SLUG}-{service}")["spec"]["template"]["spec"][
            "containers"
        ]
        [config] = container["envFrom"]
        assert set(config) == {"configMapRef"}
        assert config["configMapRef"]["name"].startswith(f"{SLUG}-config-")
        keys = ["API_KEY", "DATABASE_URL"] if service in SERVICES.service_tables else ["API_KEY"]
        assert container["env"] == [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": f"{SLUG}-secrets", "key": key}}}
            for key in keys
        ]


@each_release
def test_release_labels_and_records_what_runs(
    releases: Releases, variant: Variant, environment: str
) -> None:
    built = releases[variant, environment]
    for deployment in built.of("Deployment"):
        assert deployment["metadata"]["labels"][VERSION_LABEL] == "v1.2.3"
        assert deployment["spec"]["template"]["metadata"]["labels"][VERSION_LABEL] == "v1.2.3"
        # Selectors never include the version: a release changes pods, not which pods are whose.
        assert VERSION_LABEL not in deployment["spec"]["selector"]["matchLabels"]
    [entry] = [
        json.loads(line)
        for line in built.one("ConfigMap", f"{SLUG}-releases")["data"][
            "releases.jsonl"
        ].splitlines()
    ]
    assert entry["version"] == "v1.2.3"
    assert entry["artifacts"] == dict.fromkeys(components(variant), f"{IMAGE}:v1.2.3")


@each_release
def test_release_wiring(releases: Releases, variant: Variant, environment: str) -> None:
    built = releases[variant, environment]
    names = {(o["kind"], o["metadata"]["name"]) for o in built.objects}
    for obj in built.objects:
        assert obj["metadata"]["namespace"] == f"{SLUG}-{environment}", obj["metadata"]["name"]
    # Each Deployment has an autoscaler, on CPU and memory, that owns its replica count, and a
    # disruption budget.
    deployments = {f"{SLUG}-{component}" for component in components(variant)}
    assert {d["metadata"]["name"] for d in built.of("Deployment")} == deployments
    targets = {}
    for hpa in built.of("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        targets[target["name"]] = {m["resource"]["name"] for m in hpa["spec"]["metrics"]}
        assert "replicas" not in built.one("Deployment", target["name"])["spec"]
    assert targets == {name: {"cpu", "memory"} for name in deployments}
    budgets = [p["spec"]["selector"]["matchLabels"] for p in built.of("PodDisruptionBudget")]
    assert sorted(b["app.kubernetes.io/component"] for b in budgets) == sorted(components(variant))
    # Services, the PodDisruptionBudget and network policies select pods that exist.
    templates = [o["spec"]["template"]["metadata"]["labels"] for o in built.of("Deployment")]
    selectors = [s["spec"]["selector"] for s in built.of("Service")]
    selectors += [p["spec"]["selector"]["matchLabels"] for p in built.of("PodDisruptionBudget")]
    selectors += [p["spec"]["podSelector"]["matchLabels"] for p in built.of("NetworkPolicy")]
    for selector in selectors:
        assert any(selector.items() <= labels.items() for labels in templates), selector
    # HTTPS for the environment's host, to the api Service, with a cert-manager certificate, and
    # the NGINX Ingress Controller's settings for bodies, long and streamed responses.
    [ingress] = built.of("Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {
        "cert-manager.io/cluster-issuer": "letsencrypt",
        "acme.cert-manager.io/http01-edit-in-place": "true",
        "nginx.org/client-max-body-size": "10m",
        "nginx.org/proxy-read-timeout": "3600s",
        "nginx.org/proxy-send-timeout": "3600s",
        "nginx.org/proxy-buffering": "false",
    }
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == HOSTS[environment]
    assert ingress["spec"]["tls"][0]["hosts"] == [HOSTS[environment]]
    # `/` to the api, `/<service>` and what is under it to each service.
    routes = {path["path"]: path for path in rule["http"]["paths"]}
    assert set(routes) == {"/", *(f"/{service}" for service in variant.services)}
    for path, route in routes.items():
        component = path.strip("/") or "api"
        assert route["pathType"] == "Prefix"
        assert route["backend"]["service"] == {
            "name": f"{SLUG}-{component}",
            "port": {"name": "http"},
        }
    # The Services, so the Ingress, reach the http port only: never the metrics port.
    for component in ["api", *variant.services]:
        service = built.one("Service", f"{SLUG}-{component}")
        assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    # Pods stop within their grace period: preStop sleep, then SHUTDOWN_TIMEOUT_SECONDS.
    config = built.one("ConfigMap", next(n for k, n in names if n.startswith(f"{SLUG}-config-")))
    assert config["data"]["ENVIRONMENT"] == environment
    shutdown = int(config["data"]["SHUTDOWN_TIMEOUT_SECONDS"])
    for deployment in built.of("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        pre_stop = [c.get("lifecycle", {}).get("preStop", {}) for c in pod["containers"]]
        sleep = max(hook.get("sleep", {}).get("seconds", 0) for hook in pre_stop)
        assert pod["terminationGracePeriodSeconds"] > sleep + shutdown
    # The Secret the pods read holds exactly the keys of secret.env.example, from the environment.
    secret = built.one("Secret", f"{SLUG}-secrets")
    keys = {"DATABASE_URL", "API_KEY"} | ({"REDIS_URL"} if variant.features.redis else set())
    assert set(secret["data"]) == keys


def admitted(policies: list[dict[str, Any]], pod: dict[str, Any], direction: str) -> set[Any]:
    """(peer, protocol, port) of every rule of `direction` whose policy selects the pod; a named
    port is resolved against the pod's containers, and a peer is None when any address may be."""
    labels = pod["metadata"]["labels"]
    named = {
        port["name"]: port["containerPort"]
        for container in pod["spec"]["containers"]
        for port in container.get("ports", [])
    }
    found = set()
    for policy in policies:
        if not policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items():
            continue
        for rule in policy["spec"].get(direction, []):
            peers = [json.dumps(peer, sort_keys=True) for peer in rule.get("from", [])]
            peers += [json.dumps(peer, sort_keys=True) for peer in rule.get("to", [])]
            for port in rule["ports"]:
                number = named.get(port["port"], port["port"])
                if isinstance(number, str):
                    continue  # a named port this pod does not have: the rule admits nothing here
                found |= {(peer, port["protocol"], number) for peer in peers or [None]}
    return found


def peer(namespace: str, name: str) -> str:
    """A NetworkPolicy peer: pods labelled app.kubernetes.io/name=`name` in `namespace`."""
    return json.dumps(
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
        },
        sort_keys=True,
    )


def own(component: str) -> str:
    """A NetworkPolicy peer: the pods of one of the service's components, in its namespace."""
    labels = {"app.kubernetes.io/name": SLUG, "app.kubernetes.io/component": component}
    return json.dumps({"podSelector": {"matchLabels": labels}}, sort_keys=True)


@each_release
def test_network_policies_admit_the_proxy_prometheus_and_the_services_the_pods_call(
    releases: Releases, variant: Variant, environment: str
) -> None:
    built = releases[variant, environment]
    policies = built.of("NetworkPolicy")
    default = next(p["spec"] for p in policies if p["metadata"]["name"] == f"{SLUG}-default")
    assert default["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": SLUG}
    assert default["policyTypes"] == ["Ingress", "Egress"]  # nothing else comes in or goes out
    outbound = {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443)}
    outbound |= {("TCP", 6379)} if variant.features.redis else set()
    proxy = (peer("nginx-ingress", "nginx-ingress"), "TCP", 8000)
    prometheus = (peer("monitoring", "prometheus"), "TCP", 9000)
    for workload in built.of("Deployment"):
        pod = workload["spec"]["template"]
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        # DNS, the managed services and HTTPS, to any address; the api, the services' http port.
        calls = {(own(service), "TCP", 8000) for service in variant.services}
        expected = {(None, *port) for port in outbound} | (calls if component == "api" else set())
        assert admitted(policies, pod, "egress") == expected, component
        inbound = admitted(policies, pod, "ingress")
        if component == "api":
            # The ingress controller to the http port; Prometheus to the metrics port; no one else.
            assert inbound == {proxy, prometheus}
        elif component in variant.services:
            # The same, and the api's pods to the http port.
            assert inbound == {proxy, prometheus, (own("api"), "TCP", 8000)}, component
        else:  # the worker: Prometheus only
            assert inbound == {prometheus}, component


@pytest.mark.validate
def test_environments_differ_only_where_the_overlays_say(releases: Releases) -> None:
    staging, production = (releases[SERVICES, environment] for environment in ENVIRONMENTS)

    def shape(release: Release) -> set[tuple[str, str]]:
        return {
            (o["kind"], o["metadata"]["name"]) for o in release.objects if o["kind"] != "ConfigMap"
        }

    assert shape(staging) == shape(production)

    def bounds(release: Release) -> dict[str, tuple[int, int]]:
        return {
            hpa["metadata"]["name"].removeprefix(f"{SLUG}-"): (
                hpa["spec"]["minReplicas"],
                hpa["spec"]["maxReplicas"],
            )
            for hpa in release.of("HorizontalPodAutoscaler")
        }

    # Staging runs one pod of each; production two at least, and fewer workers than api pods at
    # most: each holds database connections.
    assert bounds(staging) == dict.fromkeys(components(SERVICES), (1, 2))
    assert bounds(production) == {
        **dict.fromkeys(components(SERVICES), (2, 10)),
        "worker": (2, 4),
    }
