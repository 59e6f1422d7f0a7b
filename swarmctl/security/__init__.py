"""Cluster security: join tokens, node certificates and TLS contexts."""
