"""Every bound on input, defined once: the request schemas, the service checks, the management port's
listener and docs/api.md all take their numbers from here. Standard library only.

Sizing. A manager must serve 1,000 nodes, each holding a session: a heartbeat, a long-poll for its
assignments (up to 10 s) and a status report may be open at once, so up to about 3,000 concurrent requests
and connections from nodes, plus the other managers forwarding CLI requests. The connection limit leaves
room above that; everything beyond it is refused at once instead of queueing in memory.

Memory. What one client can make the leader hold is bounded: a body is at most MAX_BODY bytes, a task
spec (copied into every task record and every Raft entry that creates tasks) at most MAX_TASK_SPEC_BYTES,
and a service at most MAX_REPLICAS tasks, so one request can cost at most about MAX_REPLICAS task
records of bounded size, which the state machine holds comfortably, instead of the 100,000,000 that took
the leader down before.
"""

from __future__ import annotations

# ---- services ----------------------------------------------------------------------------------
MAX_REPLICAS = 100_000                  # tasks of one replicated service
MAX_TASK_SPEC_BYTES = 64 * 1024         # the task template as JSON (image, command, args, env, ...)
MAX_NAME = 63                           # service names: a DNS label, as swarmkit
# swarmkit's isValidDNSName, ^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$, written without nested repetition so that
# matching cannot backtrack exponentially; it accepts exactly the same names.
NAME_PATTERN = r"^[A-Za-z0-9](?:[-_A-Za-z0-9]*[A-Za-z0-9])?$"
NAME_MESSAGE = "name must be valid as a DNS name component"     # swarmkit's texts
NAME_LENGTH_MESSAGE = f"name must be {MAX_NAME} characters or fewer"
MAX_IMAGE = 512                         # an image reference
# An image reference as Docker's distribution/reference grammar has it: [domain[:port]/]path[:tag][@digest],
# path components of lowercase letters and digits joined by '.', '_', '__' or dashes. Written without
# nested repetition, so a long input cannot make the match backtrack.
IMAGE_PATTERN = (r"^(?:(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?/)?"
                 r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
                 r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?$")
IMAGE_MESSAGE = "invalid reference format"  # Docker's text
MAX_ARGS = 1024                         # items of command, and of args
MAX_ARG = 16 * 1024                     # one item of command or args
MAX_ENV = 1024                          # environment variables of a task
MAX_ENV_KEY = 256
MAX_ENV_VALUE = 32 * 1024
MAX_TASK_HISTORY = 1000                # ended tasks kept per slot (`swarm update --task-history-limit`)
MAX_CONSTRAINTS = 64                    # placement constraints of a service
MAX_CONSTRAINT = 1024                   # one constraint expression
MAX_DURATION = 10 * 365 * 24 * 3600.0   # delays, windows, grace periods: seconds
MAX_CPUS = 1_000_000.0
MAX_MEMORY = 2 ** 62                    # bytes
MAX_ATTEMPTS = 2 ** 31 - 1

# ---- secrets and configs (swarmkit's MaxSecretSize and MaxConfigSize; the data must be smaller) --------
MAX_SECRET_SIZE = 500 * 1024            # bytes of a secret's data
MAX_CONFIG_SIZE = 1000 * 1024           # bytes of a config's data
MAX_SECRET_NAME = 64                    # swarmkit's rule and text (controlapi.validateConfigOrSecretAnnotations)
SECRET_NAME_PATTERN = r"^[A-Za-z0-9](?:[-_.A-Za-z0-9]*[A-Za-z0-9])?$"
SECRET_NAME_MESSAGE = ("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character "
                       "must be [a-zA-Z0-9]")
MAX_FILE_REFS = 64                      # secrets (and configs) one task spec may use
MAX_MOUNTS = 32                         # mounts of a task (task.mounts; secrets and configs are apart)
MAX_FILE_TARGET = 4096                  # characters of a secret's or config's target path

# ---- labels (services and nodes) and node descriptions ------------------------------------------
MAX_LABELS = 128                        # labels of one service or node
MAX_LABEL_KEY = 256
MAX_LABEL_VALUE = 4096
MAX_HOSTNAME = 253                      # a DNS name
MAX_ADDR = 262                          # "[IPv6]:port" with room to spare
MAX_RESOURCES = 16                      # keys of a node's resources description
MAX_CSR = 16 * 1024                     # a PEM certificate request
MAX_TOKEN = 256                         # a join token

# ---- sessions -----------------------------------------------------------------------------------
MAX_STATUS_UPDATES = 10_000             # task status reports in one request
MAX_MESSAGE = 4096                      # a task status message or error
MAX_ID = 128                            # task ids, container ids, refs in paths

# ---- requests -----------------------------------------------------------------------------------
# bytes of one request body; larger: 413. Room for a config of MAX_CONFIG_SIZE bytes, which travels as base64
# (4/3 of its size) in JSON.
MAX_BODY = 2 * 1024 * 1024
MAX_REQUEST_ID = 128                    # the X-Request-Id header
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:/+=-]{1,128}$"
MAX_LOG_TAIL = 100_000                  # lines of ?tail=N
MAX_VERSION = 2 ** 63 - 1               # ?version=N

# ---- the management port (mutual TLS) -----------------------------------------------------------
MAX_CONNECTIONS = 4096                  # open connections, TLS handshakes in progress included
MAX_REQUESTS = 3072                     # requests being handled at once; more: 429
HANDSHAKE_TIMEOUT = 10.0                # seconds for the TLS handshake
HEADER_TIMEOUT = 10.0                   # seconds from a request's first byte to the end of its headers
BODY_TIMEOUT = 15.0                     # seconds to receive a request's body
IDLE_TIMEOUT = 60.0                     # seconds a kept-alive connection may stay idle between requests


def table() -> list[tuple[str, str, str]]:
    """(name, value, meaning) of the limits a client can meet, for docs/api.md and its test."""
    return [
        ("MAX_REPLICAS", f"{MAX_REPLICAS:,}", "replicas of one service"),
        ("MAX_TASK_SPEC_BYTES", f"{MAX_TASK_SPEC_BYTES:,}", "bytes of a service's task spec as JSON"),
        ("MAX_NAME", str(MAX_NAME), "characters of a service name (letters, digits, '-' and '_', starting and "
                                    "ending with a letter or digit)"),
        ("MAX_LABELS", str(MAX_LABELS), "labels of a service or node"),
        ("MAX_LABEL_KEY / MAX_LABEL_VALUE", f"{MAX_LABEL_KEY} / {MAX_LABEL_VALUE}", "characters of a label key / value"),
        ("MAX_ENV", str(MAX_ENV), "environment variables of a task"),
        ("MAX_ENV_KEY / MAX_ENV_VALUE", f"{MAX_ENV_KEY} / {MAX_ENV_VALUE:,}", "characters of a variable's name / value"),
        ("MAX_ARGS / MAX_ARG", f"{MAX_ARGS} / {MAX_ARG:,}", "items of command or args / characters of one item"),
        ("MAX_CONSTRAINTS / MAX_CONSTRAINT", f"{MAX_CONSTRAINTS} / {MAX_CONSTRAINT}",
         "placement constraints (and preferences) / characters of one"),
        ("MAX_IMAGE", str(MAX_IMAGE), "characters of an image reference"),
        ("MAX_SECRET_SIZE / MAX_CONFIG_SIZE", f"{MAX_SECRET_SIZE:,} / {MAX_CONFIG_SIZE:,}",
         "bytes of a secret's / config's data (at least 1, less than this)"),
        ("MAX_FILE_REFS", str(MAX_FILE_REFS), "secrets, and configs, one task spec may use"),
        ("MAX_MOUNTS", str(MAX_MOUNTS), "mounts (bind, volume, tmpfs) of a task spec"),
        ("MAX_BODY", f"{MAX_BODY:,}", "bytes of a request body (413 beyond)"),
        ("MAX_REQUEST_ID", str(MAX_REQUEST_ID), "characters of X-Request-Id (letters, digits and ._:/+=-)"),
        ("MAX_CONNECTIONS", f"{MAX_CONNECTIONS:,}", "open connections to the management port (more are closed at once)"),
        ("MAX_REQUESTS", f"{MAX_REQUESTS:,}", "requests the management port handles at once (429 beyond)"),
        ("HANDSHAKE_TIMEOUT", f"{HANDSHAKE_TIMEOUT:g} s", "TLS handshake on the management port"),
        ("HEADER_TIMEOUT", f"{HEADER_TIMEOUT:g} s", "from a request's first byte to the end of its headers"),
        ("BODY_TIMEOUT", f"{BODY_TIMEOUT:g} s", "to receive a request body (408 beyond)"),
        ("IDLE_TIMEOUT", f"{IDLE_TIMEOUT:g} s", "idle kept-alive connection on the management port"),
    ]
