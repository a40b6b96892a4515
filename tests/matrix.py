"""The variant matrix, derived from copier.yml: every test takes its variants from here."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS: dict[str, Any] = yaml.safe_load((ROOT / "copier.yml").read_text())


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
        """The worker's queue lives in Redis."""
        return self.redis or not self.worker

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
        return answers

    @property
    def deploy_target(self) -> str:
        """The platform it deploys to: vercel, modal, railway, vm or k8s."""
        return self.serverless_platform or {"paas": "railway"}.get(self.topology, self.topology)

    @property
    def id(self) -> str:
        named = re.sub(r"\W+", "-", self.project_name.lower()) if self.project_name else ""
        return "-".join(filter(None, [self.deploy_target, self.features.id, named]))


TARGETS = [
    (topology, platform)
    for topology in choices("topology")
    for platform in (choices("serverless_platform") if topology == "serverless" else [None])
]
ALL_FEATURES = [Features(*flags) for flags in itertools.product([True, False], repeat=3)]
FEATURES = [features for features in ALL_FEATURES if features.valid]

VARIANTS = [Variant(t, p, f) for (t, p) in TARGETS for f in FEATURES]
INVALID = [Variant(t, p, f) for (t, p) in TARGETS for f in ALL_FEATURES if not f.valid]
# One variant per distinct service code (topology does not change the service).
SERVICES = [Variant(QUESTIONS["topology"]["default"], None, f) for f in FEATURES]
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
