#!/usr/bin/env bash
# Quality gates of the swarmctl.cluster Ansible collection (the repository root is the collection):
#   1. ansible-core 2.19 and ansible-lint installed (pip)
#   2. unit tests of the modules (python -m pytest tests/unit/plugins)
#   3. a copy of the collection content (galaxy.yml's build_ignore applied) under
#      $WORK/ansible_collections/swarmctl/cluster, checked to hold the same files as the built artifact
#   4. ansible-test sanity --venv --python 3.11 on that copy (0 errors)
#   5. ansible-lint --offline --profile production on that copy (0 failures)
#   6. ansible-galaxy collection build + install from the tarball, ansible-doc of every module
# Every gate runs (unless the tools or the copy are missing); exits non-zero if any failed, after a summary
# with the time each gate took.
#
# Options: --keep (keep the work dir), --skip-sanity, --local (ansible-test --local instead of --venv).
# SWARMCTL_CHECKS_DIR=DIR uses DIR as the work dir (default: a fresh temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

KEEP=0; SANITY=1; SANITY_MODE=--venv
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    --skip-sanity) SANITY=0 ;;
    --local) SANITY_MODE=--local ;;
    *) echo "usage: $0 [--keep] [--skip-sanity] [--local]" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
WORK=${SWARMCTL_CHECKS_DIR:-$(mktemp -d /tmp/swarmctl-collection-checks.XXXXXX)}
mkdir -p "$WORK"
cleanup() { if [ "$KEEP" = 0 ] && [ -z "${SWARMCTL_CHECKS_DIR:-}" ]; then rm -rf "$WORK"; else echo "work dir kept: $WORK"; fi; }
trap cleanup EXIT

declare -a SUMMARY=()
FAILED=0
step() {  # step NAME COMMAND...: run and time one gate; a failed gate is recorded and the next ones still run
  local name=$1; shift
  local start end rc=0
  echo "=== $name"
  start=$(date +%s%N)
  # a subshell outside any `||` context, so `set -e` applies inside the step's function
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  end=$(date +%s%N)
  local took; took=$(( (end - start) / 1000000000 )).$(( (end - start) / 100000000 % 10 ))
  if [ "$rc" != 0 ]; then
    SUMMARY+=("FAIL $name (${took}s, exit $rc)")
    FAILED=1
  else
    SUMMARY+=("ok   $name (${took}s)")
  fi
}

# ---- 1. tools -----------------------------------------------------------------------------------
install_tools() {
  "$PY" -m pip install -q --disable-pip-version-check 'ansible-core>=2.19,<2.20' ansible-lint 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'Running pip as the .root. user' || true
  "$PY" -c 'import ansible, sys; v = tuple(map(int, ansible.__version__.split(".")[:2])); sys.exit(0 if v == (2, 19) else 1)' \
    || { echo "ansible-core 2.19 is required" >&2; return 1; }
  command -v ansible-test >/dev/null && command -v ansible-lint >/dev/null
}

# ansible-test downloads get-pip from a host that cannot be reached here. This stand-in bootstraps pip with
# ensurepip and then installs what was asked for, in the environment it was started with (ensurepip points
# PIP_CONFIG_FILE at /dev/null, which would lose this machine's pip configuration).
install_get_pip() {
  local version
  # the pip version ansible-test bootstraps (infrastructure_packages: pip='24.2' in ansible-core 2.19)
  version=$("$PY" - <<'EOF'
import os, re, ansible_test
path = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
m = re.search(r"pip='([0-9.]+)'", open(path).read())
print(m.group(1) if m else "24.2")
EOF
)
  mkdir -p ~/.ansible/test/cache
  local target=~/.ansible/test/cache/get_pip_${version//./_}.py
  cat > "$target" <<'EOF'
"""Offline stand-in for get-pip.py (written by scripts/collection-checks.sh): bootstrap pip with ensurepip,
then install the requested packages with the environment this script was started with."""
import ensurepip
import os
import subprocess
import sys

ENV = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
ARGS = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q"] + ARGS, env=ENV))
EOF
  echo "get-pip stand-in: $target"
}

# ---- 2. unit tests ------------------------------------------------------------------------------
unit_tests() {
  "$PY" -m pytest -q -p no:cacheprovider tests/unit/plugins
}

# ---- 3. the collection copies ---------------------------------------------------------------------
COLL="$WORK/ansible_collections/swarmctl/cluster"
# ansible-test sanity checks Ansible content; the swarmctl daemon's own Python package (shipped for the daemon
# role) follows the project's style, not ansible-core's pylint/pep8 rules, so the sanity copy leaves it out.
SANITY_COLL="$WORK/sanity/ansible_collections/swarmctl/cluster"
copy_collection() {
  rm -rf "$WORK/ansible_collections" "$WORK/sanity"
  copy_tree "$COLL" && copy_tree "$SANITY_COLL" swarmctl
}
copy_tree() {  # copy_tree DEST [EXTRA_IGNORE...]
  "$PY" - "$ROOT" "$@" <<'EOF'
"""Copy the collection content: galaxy.yml's build_ignore applied the way ansible-galaxy applies it
(fnmatch on each relative directory and file path, plus its own default ignores)."""
import fnmatch, os, shutil, sys
import yaml

root, dest, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(os.path.join(root, "galaxy.yml")) as f:
    galaxy = yaml.safe_load(f)
patterns = list(galaxy.get("build_ignore") or []) + [
    "galaxy.yml", "*.pyc", "*.retry", "tests/output", ".git", "*/.git", "__pycache__", "*/__pycache__"] + extra
patterns.remove("galaxy.yml")  # ansible-galaxy leaves it out of the tarball; the copy needs it (ansible-test, lint)

def ignored(rel):
    return any(fnmatch.fnmatch(rel, p) for p in patterns)

count = 0
for dirpath, dirnames, filenames in os.walk(root):
    rel_dir = os.path.relpath(dirpath, root)
    rel_dir = "" if rel_dir == "." else rel_dir
    dirnames[:] = sorted(d for d in dirnames if not ignored(os.path.join(rel_dir, d)))
    for name in filenames:
        rel = os.path.join(rel_dir, name)
        if ignored(rel) or os.path.islink(os.path.join(root, rel)):
            continue
        os.makedirs(os.path.join(dest, rel_dir), exist_ok=True)
        shutil.copy2(os.path.join(root, rel), os.path.join(dest, rel))
        count += 1
print("copied %d files to %s" % (count, dest))
EOF
}

# ---- 4. ansible-test sanity ---------------------------------------------------------------------
sanity() {
  (cd "$SANITY_COLL" && ansible-test sanity "$SANITY_MODE" --python 3.11 --color no)
}

# ---- 5. ansible-lint ----------------------------------------------------------------------------
lint() {
  (cd "$COLL" && ANSIBLE_COLLECTIONS_PATH="$WORK" ansible-lint --offline --profile production --nocolor)
}

# ---- 6. build, install, ansible-doc ---------------------------------------------------------------
build_install_doc() {
  local dist="$WORK/dist" installed="$WORK/installed"
  rm -rf "$dist" "$installed"; mkdir -p "$dist" "$installed"
  (cd "$COLL" && ansible-galaxy collection build --output-path "$dist")
  local tarball; tarball=$(ls "$dist"/swarmctl-cluster-*.tar.gz)
  # from the work dir: no ansible.cfg of a checkout decides where collections are looked up
  cd "$WORK"
  ansible-galaxy collection install --force -p "$installed" "$tarball" 2>&1 | grep -v "is not part of the configured"
  # The artifact must hold exactly the copy's files (the copy adds only galaxy.yml).
  "$PY" - "$tarball" "$COLL" <<'EOF'
import os, sys, tarfile
tarball, coll = sys.argv[1], sys.argv[2]
with tarfile.open(tarball) as tar:
    in_tar = {m.name for m in tar.getmembers() if m.isfile()} - {"MANIFEST.json", "FILES.json"}
in_copy = set()
for dirpath, _dirs, files in os.walk(coll):
    for name in files:
        rel = os.path.relpath(os.path.join(dirpath, name), coll)
        if not rel.startswith("tests/output/") and "__pycache__" not in rel and not rel.endswith(".pyc"):
            in_copy.add(rel)
in_copy.discard("galaxy.yml")
extra, missing = sorted(in_tar - in_copy), sorted(in_copy - in_tar)
for rel in ("swarmctl/__init__.py", "pyproject.toml", "plugins/modules/service.py", "meta/runtime.yml"):
    if rel not in in_tar:
        sys.exit("artifact lacks %s" % rel)
if extra or missing:
    sys.exit("artifact and copy differ: only in artifact %s, only in copy %s" % (extra[:10], missing[:10]))
print("artifact: %d files, same as the checked copy" % len(in_tar))
EOF
  local module out
  for module in swarm node node_info service service_info info secret config stack; do
    out=$(ANSIBLE_COLLECTIONS_PATH="$installed" ansible-doc -t module "swarmctl.cluster.$module")
    echo "$out" | grep -q "swarmctl_host" || { echo "ansible-doc swarmctl.cluster.$module: no swarmctl_host option" >&2; return 1; }
    echo "ansible-doc swarmctl.cluster.$module: $(echo "$out" | wc -l) lines"
  done
  ANSIBLE_COLLECTIONS_PATH="$installed" ansible-doc -t module -l swarmctl.cluster
}

step "install ansible-core 2.19 + ansible-lint" install_tools
[ "$FAILED" = 0 ] || { printf '%s\n' "${SUMMARY[@]}"; exit 1; }
step "get-pip stand-in" install_get_pip
step "unit tests (tests/unit/plugins)" unit_tests
step "collection copies" copy_collection
[ "$FAILED" = 0 ] || { printf '%s\n' "${SUMMARY[@]}"; exit 1; }
if [ "$SANITY" = 1 ]; then
  step "ansible-test sanity $SANITY_MODE --python 3.11" sanity
fi
step "ansible-lint --profile production" lint
step "build, install, ansible-doc" build_install_doc
echo "=== summary"
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" != 0 ]; then
  echo "collection checks FAILED" >&2
  exit 1
fi
echo "collection checks passed"
