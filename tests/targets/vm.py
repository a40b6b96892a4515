"""Files the vm target adds."""

from __future__ import annotations

from ..matrix import Variant

# Prometheus's configuration and scrape targets per colour, Alertmanager's, Grafana's provisioning,
# and the nginx server that gives Prometheus the backup service's figures.
MONITORING = {
    "deploy/vm/nginx/textfiles.conf",
    "deploy/vm/grafana/datasources/prometheus.yml",
    "deploy/vm/grafana/dashboards/provider.yml",
    "deploy/vm/prometheus/prometheus.yml",
    "deploy/vm/prometheus/blue.yml",
    "deploy/vm/prometheus/green.yml",
    "deploy/vm/alertmanager/alertmanager.yml",
}


def files(variant: Variant) -> set[str]:
    """The vm deploy files of `variant`: the release script, the host's compose file, nginx, the
    backup script, and monitoring unless left out."""
    return {
        "scripts/deploy/vm.py",
        "deploy/vm/compose.yaml",
        "deploy/vm/backup/backup.sh",
        "deploy/vm/nginx/api.conf",
        "deploy/vm/nginx/upstreams/blue.conf",
        "deploy/vm/nginx/upstreams/green.conf",
    } | (MONITORING if variant.monitored else set())
