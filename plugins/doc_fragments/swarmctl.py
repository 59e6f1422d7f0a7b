# Copyright: swarmctl contributors
# Apache License 2.0 (see LICENSE in the collection root)

from __future__ import annotations


class ModuleDocFragment:
    """The connection options every swarmctl.cluster module shares (module_utils.swarmctl_client)."""

    DOCUMENTATION = r"""
options:
  swarmctl_host:
    description:
      - The local daemon's API socket, C(unix:///PATH).
      - If not set, the environment variable E(SWARMCTL_HOST) is used, then the default.
    type: str
    default: unix:///run/swarmctl/swarmctl.sock
  timeout:
    description:
      - Seconds to wait for each answer of the daemon.
    type: int
    default: 60
"""
