"""The read-only live web view served by managers (`swarmctl daemon --web-addr`)."""
