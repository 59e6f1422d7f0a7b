"""The routing mesh: published ports (ports.py) and the per-node userspace TCP/UDP proxy (proxy.py)."""
