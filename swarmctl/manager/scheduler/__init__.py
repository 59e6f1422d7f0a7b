"""The scheduler: filters, strategies, and the leader-only component that assigns pending tasks."""
