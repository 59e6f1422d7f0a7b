"""swarmctl: a Docker-Swarm-style orchestrator. Kept import-free so the CLI starts fast."""

__version__ = "0.1.0"
