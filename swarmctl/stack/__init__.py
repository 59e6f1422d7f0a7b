"""Stacks: compose files deployed as services, secrets and configs, as `docker stack deploy` does it.

compose.py reads, interpolates, validates and merges the files; translate.py turns them into API bodies;
plan.py decides what changes. The CLI (swarmctl/cli/stack_cmds.py) runs the plan; this package is imported
only by `stack` commands (it needs PyYAML and jsonschema).
"""
