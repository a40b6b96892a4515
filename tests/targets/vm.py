"""Files the vm target adds."""

from __future__ import annotations

from ..matrix import Variant


def files(variant: Variant) -> set[str]:
    """The vm deploy files of `variant`: the release script, the host's compose file and nginx."""
    return {
        "scripts/deploy/vm.py",
        "deploy/vm/compose.yaml",
        "deploy/vm/nginx/api.conf",
        "deploy/vm/nginx/upstreams/blue.conf",
        "deploy/vm/nginx/upstreams/green.conf",
    }
