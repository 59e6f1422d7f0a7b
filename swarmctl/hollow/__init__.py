"""Hollow nodes: many real worker nodes in one process, on the simulated runtime (issue 8, point 1).

config.py parses the flags of `swarmctl hollow`, node.py is one hollow node, process.py runs N of them with
one shared agent listener, main.py is the process's life (signals, the summary line).
"""
