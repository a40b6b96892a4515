"""The variant matrix, derived from copier.yml: every test takes its variants from here."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS: dict[str, Any] = yaml.safe_load((ROOT / "copier.yml").read_text())
# copier.yml's Jinja, evaluated as Copier does (the same filters, and imports from the template's
# root), so that the matrix takes validity and derived answers from there instead of restating them.
JINJA = jinja2.Environment(
    loader=jinja2.FileSystemLoader(ROOT),
    extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension"],
)


def defaults(**answers: Any) -> dict[str, Any]:
    """`answers`, completed with copier.yml's defaults of the questions they leave out."""
    completed = dict(answers)
    for key, question in QUESTIONS.items():
        if key.startswith("_") or key in completed:
            continue
        default = question.get("default")
        if isinstance(default, str) and "{" in default:
            default = yaml.safe_load(JINJA.from_string(default).render(**completed))
        completed[key] = default
    return completed


def rejection(question: str, **answers: Any) -> str:
    """What copier.yml's validator of `question` says of `answers` ("" when it accepts them)."""
    validator = QUESTIONS[question].get("validator", "")
    given = {"_copier_conf": {"data": answers, "user_defaults": {}}}  # as `--data` gives them
    return JINJA.from_string(validator).render(**defaults(**answers), **given).strip()


def choices(question: str) -> list[str]:
    """The values a question accepts, in copier.yml order."""
    options = QUESTIONS[question]["choices"]
    return list(options.values() if isinstance(options, dict) else options)


@dataclass(frozen=True)
class Features:
    """The answers that change the service code."""

    pgvector: bool
    redis: bool
    worker: bool

    @property
    def valid(self) -> bool:
        """Whether copier.yml accepts these answers (the worker's queue lives in Redis)."""
        return not rejection("worker", worker=self.worker, redis=self.redis)

    @property
    def id(self) -> str:
        on = [name for name in ("pgvector", "redis", "worker") if getattr(self, name)]
        return "+".join(on) or "plain"


@dataclass(frozen=True)
class Variant:
    """One way to answer the questionnaire: a deploy target and the features."""

    topology: str
    serverless_platform: str | None
    features: Features
    project_name: str | None = None  # None: copier.yml's default
    services: tuple[str, ...] = ()  # extra services beside the API
    service_tables: tuple[str, ...] = ()  # those of the services that own tables
    monitoring: bool | None = None  # None: copier.yml's default

    @property
    def answers(self) -> dict[str, Any]:
        """The copier answers for this variant."""
        answers: dict[str, Any] = {
            "topology": self.topology,
            "pgvector": self.features.pgvector,
            "redis": self.features.redis,
            "worker": self.features.worker,
        }
        if self.serverless_platform:
            answers["serverless_platform"] = self.serverless_platform
        if self.project_name:
            answers["project_name"] = self.project_name
        if self.services:
            answers["services"] = list(self.services)
        if self.service_tables:
            answers["service_tables"] = list(self.service_tables)
        if self.monitoring is not None:
            answers["monitoring"] = self.monitoring
        return answers

    @cached_property
    def deploy_target(self) -> str:
        """The platform it deploys to: vercel, modal, railway, vm or k8s (copier.yml derives it)."""
        return str(defaults(**self.answers)["deploy_target"])

    @cached_property
    def monitored(self) -> bool:
        """Whether the VM runs Prometheus and the rest of monitoring beside the service."""
        return bool(defaults(**self.answers)["monitoring"])

    @property
    def id(self) -> str:
        named = re.sub(r"\W+", "-", self.project_name.lower()) if self.project_name else ""
        services = "+".join(self.services)
        unmonitored = "unmonitored" if self.monitoring is False else ""
        parts = [self.deploy_target, self.features.id, services, named, unmonitored]
        return "-".join(filter(None, parts))


TARGETS = [
    (topology, platform)
    for topology in choices("topology")
    for platform in (choices("serverless_platform") if topology == "serverless" else [None])
]
ALL_FEATURES = [Features(*flags) for flags in itertools.product([True, False], repeat=3)]
FEATURES = [features for features in ALL_FEATURES if features.valid]

# Extra services, on each topology whose answers copier.yml's `services` validator accepts with
# them: every feature on, and two services, one of which owns tables (the other uses none).
TWO_SERVICES = ("search", "memory")
TABLE_OWNERS = ("memory",)
WITH_SERVICES = [
    Variant(
        topology,
        platform,
        Features(True, True, True),
        services=TWO_SERVICES,
        service_tables=TABLE_OWNERS,
    )
    for (topology, platform) in TARGETS
    if not rejection("services", topology=topology, services=list(TWO_SERVICES))
]
# The VM without its monitoring stack (every other VM variant runs it, copier.yml's default).
UNMONITORED = Variant(
    "vm", None, Features(pgvector=False, redis=True, worker=False), monitoring=False
)
VARIANTS = (
    [Variant(t, p, f) for (t, p) in TARGETS for f in FEATURES] + WITH_SERVICES + [UNMONITORED]
)
INVALID = [Variant(t, p, f) for (t, p) in TARGETS for f in ALL_FEATURES if not f.valid]
# One variant per distinct service code (topology does not change the service).
CODE_VARIANTS = [Variant(QUESTIONS["topology"]["default"], None, f) for f in FEATURES]
DEFAULT = Variant(
    QUESTIONS["topology"]["default"],
    None,
    Features(*(QUESTIONS[name]["default"] for name in ("pgvector", "redis", "worker"))),
)
# Project names whose package sorts before and after `scripts` (the project's tooling, which the
# tests import too): the import order must hold either way. The first is copier.yml's default.
NAMES = [QUESTIONS["project_name"]["default"], "Zeta API", "Worker Svc"]
NAMED = [replace(DEFAULT, project_name=name) for name in NAMES[1:]]
DEPLOY_TARGETS = sorted({variant.deploy_target for variant in VARIANTS})


def variants_of(deploy_target: str) -> list[Variant]:
    """The variants that deploy to `deploy_target`."""
    return [variant for variant in VARIANTS if variant.deploy_target == deploy_target]


def full_variant(deploy_target: str) -> Variant:
    """The variant of `deploy_target` with every feature on."""
    everything = Features(pgvector=True, redis=True, worker=True)
    return next(v for v in variants_of(deploy_target) if v.features == everything)
