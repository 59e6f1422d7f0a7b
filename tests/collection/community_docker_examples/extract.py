"""Re-extract the EXAMPLES of community.docker's swarm modules, verbatim, from a git copy of the collection.

    python3 tests/collection/community_docker_examples/extract.py [--check] [GIT_DIR] [COMMIT]

GIT_DIR defaults to /work/.mirror/ansible-collections+community.docker/repo (a bare clone of
https://github.com/ansible-collections/community.docker), COMMIT to the one the copy was taken from.
The modules are parsed with `ast` (never imported). Without --check the YAML files next to this script are
(re)written; with --check they are compared and the differing ones named (exit 1).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GIT_DIR = "/work/.mirror/ansible-collections+community.docker/repo"
COMMIT = "ac6ecb0527b9b490470078cbe02a13515dcbb1ea"
MODULES = ("docker_swarm", "docker_node", "docker_swarm_service", "docker_swarm_info", "docker_node_info",
           "docker_swarm_service_info", "docker_stack", "docker_secret", "docker_config")


def examples_of(source: str) -> str:
    """The value of the module-level string EXAMPLES of a module's source."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "EXAMPLES" for t in node.targets):
            value = ast.literal_eval(node.value)
            if not isinstance(value, str):
                raise ValueError("EXAMPLES is not a string")
            return value
    raise ValueError("no EXAMPLES in the module")


def extract(git_dir: str = DEFAULT_GIT_DIR, commit: str = COMMIT) -> dict:
    """{module: EXAMPLES text} read with `git show COMMIT:plugins/modules/MODULE.py`."""
    found = {}
    for module in MODULES:
        source = subprocess.run(["git", "--git-dir", git_dir, "show", f"{commit}:plugins/modules/{module}.py"],
                                capture_output=True, text=True, check=True, timeout=60).stdout
        found[module] = examples_of(source)
    return found


def vendored() -> dict:
    """{module: text} of the stored copies."""
    found = {}
    for module in MODULES:
        with open(os.path.join(HERE, f"{module}.yml"), encoding="utf-8") as f:
            found[module] = f.read()
    return found


def main(argv: list) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    git_dir = args[0] if args else DEFAULT_GIT_DIR
    commit = args[1] if len(args) > 1 else COMMIT
    fresh = extract(git_dir, commit)
    if check:
        stored = vendored()
        differ = [m for m in MODULES if stored[m] != fresh[m]]
        for module in differ:
            print(f"{module}.yml differs from {commit}:plugins/modules/{module}.py EXAMPLES", file=sys.stderr)
        return 1 if differ else 0
    for module, text in fresh.items():
        with open(os.path.join(HERE, f"{module}.yml"), "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
