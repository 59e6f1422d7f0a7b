"""The node's data dir: identity, certificates and Raft files, so a restart keeps who we are.

Layout (docs/operations.md):
  swarmctl.json   marker and identity (node id, cluster id, role, known managers)
  certs/          ca.pem, node.pem, node.key (0600: the TLS key and, on managers, the swarm's data
                  encryption key; both wrapped by the unlock key under autolock: node/keyfile.py)
  raft/           members.json (0600: member list, and the managers' {raft address: node id} until the
                  replica holds the cluster state), journal and snapshot
  daemon.lock     held while a daemon uses the dir
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil

from swarmctl.node.keyfile import KeyFileError, NodeKeys

FORMAT = 1
MARKER = "swarmctl.json"


class DataDirError(Exception):
    """The data dir cannot be used; the message says why and what to do."""


def _write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class DataDir:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._lock_fd: int | None = None
        self.keys = NodeKeys(self.key_file, _write_atomic)  # the key file's contents, in memory

    # ---- paths -------------------------------------------------------------------------------
    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    @property
    def raft_dir(self) -> str:
        return self.file("raft")

    @property
    def ca_file(self) -> str:
        return self.file("certs", "ca.pem")

    @property
    def cert_file(self) -> str:
        return self.file("certs", "node.pem")

    @property
    def key_file(self) -> str:
        return self.file("certs", "node.key")

    # ---- open / lock -------------------------------------------------------------------------
    def open(self) -> dict:
        """Create or check the dir, take its lock, and return the stored identity ({} if none)."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise DataDirError(f"data dir {self.path} is not a directory")
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        marker = self.file(MARKER)
        entries = [e for e in os.listdir(self.path) if e not in ("daemon.lock", "daemon.log", "daemon.pid")]
        if not os.path.exists(marker):
            if entries:
                raise DataDirError(f"data dir {self.path} is not a swarmctl data dir (it holds {sorted(entries)[:3]}); "
                                   "use an empty directory")
            _write_atomic(marker, json.dumps({"format": FORMAT}).encode())
        self._lock()
        identity = self.load_identity()
        if identity:
            try:
                self.keys.load()
            except KeyFileError as exc:
                raise DataDirError(f"data dir {self.path} is corrupt: {exc}") from None
        return identity

    def _lock(self) -> None:
        fd = os.open(self.file("daemon.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirError(f"data dir {self.path} is in use by another swarmctl daemon") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- identity ----------------------------------------------------------------------------
    def load_identity(self) -> dict:
        try:
            with open(self.file(MARKER), "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError) as exc:
            raise DataDirError(f"data dir {self.path} is corrupt: cannot read {MARKER}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataDirError(f"data dir {self.path} is corrupt or from an unsupported version "
                               f"({MARKER} format {data.get('format') if isinstance(data, dict) else '?'})")
        identity = data.get("identity") or {}
        if identity:
            missing = [p for p in (self.ca_file, self.cert_file, self.key_file) if not os.path.exists(p)]
            if missing:
                raise DataDirError(f"data dir {self.path} is corrupt: missing {', '.join(missing)}")
            if identity.get("role") == "manager" and not os.path.exists(self.file("raft", "members.json")):
                raise DataDirError(f"data dir {self.path} is corrupt: manager without raft/members.json")
        return identity

    def save_identity(self, identity: dict) -> None:
        _write_atomic(self.file(MARKER), json.dumps({"format": FORMAT, "identity": identity}, indent=1).encode())

    def save_certs(self, ca_pem: bytes, cert_pem: bytes, key_pem: bytes | None = None) -> None:
        os.makedirs(self.file("certs"), mode=0o700, exist_ok=True)
        _write_atomic(self.ca_file, ca_pem, 0o644)
        _write_atomic(self.cert_file, cert_pem, 0o644)
        if key_pem is not None:
            self.keys.save_tls_key(key_pem)  # with the DEK and the autolock wrapping it carries

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    # ---- raft --------------------------------------------------------------------------------
    def load_raft(self) -> dict:
        """{"members": [raft addr], "peers": {raft addr: node id}}. Files of older versions also hold the
        Raft secret of pysyncobj's encrypted transport; it is no longer used and is ignored."""
        try:
            with open(self.file("raft", "members.json"), "rb") as f:
                data = json.loads(f.read())
            members = [str(m) for m in data["members"]]
            peers = {str(k): str(v) for k, v in (data.get("peers") or {}).items()}
            return {"members": members, "peers": peers}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataDirError(f"data dir {self.path} is corrupt: cannot read raft/members.json: {exc}") from None

    def save_raft(self, members: list[str], peers: dict[str, str] | None = None) -> None:
        os.makedirs(self.raft_dir, mode=0o700, exist_ok=True)
        data = {"members": members}
        if peers:
            data["peers"] = peers
        _write_atomic(self.file("raft", "members.json"), json.dumps(data).encode())

    def clear_raft(self) -> None:
        shutil.rmtree(self.raft_dir, ignore_errors=True)

    def clear_all(self) -> None:
        """Forget the swarm (after leave): keep the marker and lock, drop identity, certs and Raft."""
        self.clear_raft()
        shutil.rmtree(self.file("certs"), ignore_errors=True)
        self.keys.forget()
        self.save_identity({})
