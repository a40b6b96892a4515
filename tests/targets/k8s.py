"""Files the k8s target adds: the deploy module, the kustomize tree under deploy/k8s and the
workflows' kubectl pin."""

from __future__ import annotations

from ..matrix import Variant

BASE = {
    "base/.gitignore",
    "base/kustomization.yaml",
    "base/config.env",
    "base/secret.env.example",
    "base/service-account.yaml",
    "base/api-deployment.yaml",
    "base/api-service.yaml",
    "base/migrate-job.yaml",
}
COMPONENTS = {
    "components/ingress/kustomization.yaml",
    "components/ingress/ingress.yaml",
    "components/autoscaling/kustomization.yaml",
    "components/autoscaling/api-hpa.yaml",
    "components/disruption-budget/kustomization.yaml",
    "components/disruption-budget/api-pdb.yaml",
    "components/network-policy/kustomization.yaml",
    "components/network-policy/egress.yaml",
    "components/network-policy/egress-https.yaml",
    "components/network-policy/api-ingress.yaml",
    "components/network-policy/metrics-ingress.yaml",
    "components/external-secrets/kustomization.yaml",
    "components/external-secrets/external-secret.yaml",
    "components/monitoring/kustomization.yaml",
    "components/monitoring/pod-monitor.yaml",
    "components/monitoring/prometheus-rule.yaml",
    "components/monitoring/dashboard.yaml",
    "components/backup/kustomization.yaml",
    "components/backup/cronjob.yaml",
}
OVERLAYS = {"overlays/staging/kustomization.yaml", "overlays/production/kustomization.yaml"}
CLUSTER = {
    "cluster/kustomization.yaml",
    "cluster/namespace-staging.yaml",
    "cluster/namespace-production.yaml",
    "cluster/cluster-issuer.yaml",
}
WORKER = {
    "base/worker-deployment.yaml",
    "components/autoscaling/worker-hpa.yaml",
    "components/disruption-budget/worker-pdb.yaml",
}


# Each service's, and the api's permission to call them.
SERVICE = {
    "base/{service}-deployment.yaml",
    "base/{service}-service.yaml",
    "components/network-policy/{service}-ingress.yaml",
    "components/autoscaling/{service}-hpa.yaml",
    "components/disruption-budget/{service}-pdb.yaml",
}
CALLS = {"components/network-policy/api-egress.yaml"}


def files(variant: Variant) -> set[str]:
    """The k8s deploy files of `variant`."""
    manifests = BASE | COMPONENTS | OVERLAYS | CLUSTER
    if variant.features.worker:
        manifests |= WORKER
    for service in variant.services:
        manifests |= {name.format(service=service) for name in SERVICE} | CALLS
    tools = {"scripts/deploy/k8s.py", ".github/kubectl.Dockerfile"}
    return tools | {f"deploy/k8s/{name}" for name in manifests}
