"""The files of a node's tasks (secrets and configs), kept in memory only: a tmpfs of the agent's own.

The agent mounts a tmpfs (`mode=0700,nodev,nosuid,noexec`, as Docker's secrets dir) on a directory next to the
daemon's socket, in its run dir, when the first task needs a file, and unmounts it when it stops. Where it
cannot mount (not root, no CAP_SYS_ADMIN) it falls back to a directory of its own under /dev/shm, which is a
tmpfs too; where neither is possible the task fails rather than have a secret touch the node's disk. Each task
gets a directory (0700) with one file per secret or config, written with the requested uid, gid and mode, and
bind-mounted read-only into the container at its target; the directory goes when the task ends.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import subprocess

log = logging.getLogger(__name__)

SECRETS_DIR = "/run/secrets"  # where a secret with a relative target is mounted in the container
TMPFS_SIZE = "64m"            # an upper bound: a tmpfs holds only what is written to it
TMPFS = 0x01021994            # statfs f_type of a tmpfs (linux/magic.h TMPFS_MAGIC)


class FilesUnavailable(Exception):
    """No memory-backed place for the files: the task must not start."""


def container_path(kind: str, target: str) -> str:
    """Where a file is mounted in the container: a relative secret target under /run/secrets, a relative config
    target under / (Docker's rules); an absolute target as it is."""
    if target.startswith("/"):
        return posixpath.normpath(target)
    return posixpath.normpath(posixpath.join(SECRETS_DIR if kind == "secret" else "/", target))


def _is_tmpfs(path: str) -> bool:
    """Whether path lives on a tmpfs (/proc/mounts: the longest mount point that contains it)."""
    path = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, fstype = point, parts[2]
    except OSError:
        return False
    return fstype == "tmpfs"


class TaskFiles:
    def __init__(self, root: str | None, fallback_name: str = "swarmctl"):
        self.root = root  # the mount point in the run dir (None: only the /dev/shm fallback)
        self.fallback = os.path.join("/dev/shm", f"{fallback_name}.files")
        self.base: str | None = None
        self.mounted = False

    def _ensure(self) -> str:
        if self.base is not None and os.path.isdir(self.base):
            return self.base
        if self.root:
            try:
                os.makedirs(self.root, mode=0o700, exist_ok=True)
                if not os.path.ismount(self.root):
                    subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0700,size={TMPFS_SIZE},nodev,nosuid,noexec",
                                    "tmpfs", self.root], check=True, capture_output=True, timeout=10)
                if _is_tmpfs(self.root):
                    self.mounted = True  # ours, or left by an agent of this node that was killed: unmounted at close
                    self.base = self.root
                    return self.base
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("cannot mount a tmpfs for task files on %s (%s); using %s", self.root, exc, self.fallback)
        try:
            os.makedirs(self.fallback, mode=0o700, exist_ok=True)
            os.chmod(self.fallback, 0o700)
        except OSError as exc:
            raise FilesUnavailable(f"no tmpfs for secrets and configs: {exc}") from None
        if not _is_tmpfs(self.fallback):
            raise FilesUnavailable(f"no tmpfs for secrets and configs: {self.fallback} is not on a tmpfs")
        self.base = self.fallback
        return self.base

    def task_dir(self, task_id: str) -> str:
        return os.path.join(self._ensure(), task_id)

    def write(self, task_id: str, files: list[dict]) -> list[tuple[str, str]]:
        """Write a task's files (dicts: name, data bytes, uid, gid, mode, path in the container); returns
        (host path, container path) pairs to bind-mount read-only."""
        directory = self.task_dir(task_id)
        shutil.rmtree(directory, ignore_errors=True)  # a retried start writes them afresh
        os.makedirs(directory, mode=0o700)
        mounts = []
        for item in files:
            host = os.path.join(directory, item["name"])
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, item["data"])
                os.fchown(fd, int(item["uid"]), int(item["gid"]))
                os.fchmod(fd, item["mode"])
            finally:
                os.close(fd)
            mounts.append((host, item["path"]))
        return mounts

    def tasks(self) -> list[str]:
        """Ids of the tasks that have files here."""
        if self.base is None or not os.path.isdir(self.base):
            return []
        return os.listdir(self.base)

    def remove(self, task_id: str) -> None:
        if self.base is not None:
            shutil.rmtree(os.path.join(self.base, task_id), ignore_errors=True)

    def close(self) -> None:
        """Remove every file, and unmount the tmpfs this agent mounted."""
        for task_id in self.tasks():
            self.remove(task_id)
        if self.mounted and self.root:
            result = subprocess.run(["umount", self.root], capture_output=True, timeout=10)
            if result.returncode != 0:  # still held (a container's mount namespace): detach it
                subprocess.run(["umount", "-l", self.root], capture_output=True, timeout=10)
            self.mounted = False
            try:
                os.rmdir(self.root)
            except OSError:
                pass
        elif self.base == self.fallback:
            shutil.rmtree(self.fallback, ignore_errors=True)
        self.base = None
