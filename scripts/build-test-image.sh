#!/usr/bin/env bash
# Builds the offline test image swarmctl-test/busybox:latest from the host's static busybox
# (no registry is needed):  scripts/build-test-image.sh [DOCKER_HOST]
# DOCKER_HOST defaults to $DOCKER_HOST, then the private test engine unix:///tmp/swarmctl-dockerd/docker.sock.
# Does nothing if the image already exists.
set -euo pipefail

IMAGE="swarmctl-test/busybox:latest"
HOST="${1:-${DOCKER_HOST:-unix:///tmp/swarmctl-dockerd/docker.sock}}"
APPLETS=(sh sleep httpd echo cat nc wget ls env true false kill ps)

if docker -H "$HOST" image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi

# the busybox-static package puts a statically linked busybox at /bin/busybox
is_static() { [[ -x "$1" ]] && ! ldd "$1" >/dev/null 2>&1; }
if ! is_static /bin/busybox; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq busybox-static >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null; }
fi
is_static /bin/busybox || { echo "/bin/busybox is not a static binary (install busybox-static)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/swarmctl-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS"/{bin,etc,tmp,proc,sys,dev,root}
chmod 1777 "$ROOTFS/tmp"
cp /bin/busybox "$ROOTFS/bin/busybox"
for a in "${APPLETS[@]}"; do
  ln -s busybox "$ROOTFS/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOTFS/etc/group"

tar --numeric-owner --owner=0 --group=0 -C "$ROOTFS" -c . \
  | docker -H "$HOST" import \
      -c 'ENV PATH=/bin' \
      -c 'CMD ["/bin/sh"]' \
      -m "swarmctl offline test image (static busybox)" \
      - "$IMAGE" >/dev/null
echo "built $IMAGE"
