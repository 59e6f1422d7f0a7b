"""Request bodies and query strings of the API, validated with pydantic; unknown body fields are refused.

Every bound comes from swarmctl/api/limits.py, so the validation, the OpenAPI description built from these
models (GET /v1/openapi.json) and docs/api.md cannot disagree.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from swarmctl.api import limits as L

Text = Annotated[str, StringConstraints(max_length=L.MAX_MESSAGE)]
Addr = Annotated[str, StringConstraints(max_length=L.MAX_ADDR)]
Hostname = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_HOSTNAME)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_LABEL_KEY, pattern=r"^[^\s]+$")]
LabelValue = Annotated[str, StringConstraints(max_length=L.MAX_LABEL_VALUE)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=L.MAX_LABELS)]
Arg = Annotated[str, StringConstraints(max_length=L.MAX_ARG, pattern=r"^[^\x00]*$")]
Args = Annotated[list[Arg], Field(max_length=L.MAX_ARGS)]
EnvKey = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_ENV_KEY, pattern=r"^[^=\x00]+$")]
EnvValue = Annotated[str, StringConstraints(max_length=L.MAX_ENV_VALUE, pattern=r"^[^\x00]*$")]
Constraint = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_CONSTRAINT)]
Duration = Annotated[float, Field(ge=0, le=L.MAX_DURATION)]
Count = Annotated[int, Field(ge=0, le=L.MAX_ATTEMPTS)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_ID)]


class Body(BaseModel):
    # NaN and infinities are not numbers a spec can hold (Python's JSON parser accepts them)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Empty(Body):
    pass


class SwarmSettings(Body):
    """Swarm-wide settings `swarm init` and `swarm update` both take; ranges and meaning: state/raftsettings.py
    (checked there, so a value out of range is one line naming the setting)."""
    # seconds; at least one minute (Swarm: an hour), at most the root CA's remaining life in practice
    node_cert_expiry: Optional[float] = Field(default=None, ge=60, le=20 * 365 * 24 * 3600)
    # ended tasks kept per slot (per node for global services); Docker's TaskHistoryRetentionLimit
    task_history_limit: Optional[int] = Field(default=None, ge=0, le=L.MAX_TASK_HISTORY)
    election_tick: Optional[float] = None
    heartbeat_tick: Optional[float] = None
    snapshot_interval: Optional[float] = None
    keep_old_snapshots: Optional[float] = None
    log_entries_for_slow_followers: Optional[float] = None
    dispatcher_heartbeat_period: Optional[float] = None  # seconds


class InitRequest(SwarmSettings):
    advertise_addr: Optional[Addr] = None
    listen_addr: Optional[Addr] = None
    force_new_cluster: bool = False
    autolock: bool = False
    data_path_addr: Optional[Addr] = None
    data_path_port: Optional[int] = None


class JoinRequest(Body):
    token: str = Field(min_length=1, max_length=L.MAX_TOKEN)
    remote_addr: Addr = Field(min_length=1)
    advertise_addr: Optional[Addr] = None
    listen_addr: Optional[Addr] = None
    data_path_addr: Optional[Addr] = None
    data_path_port: Optional[int] = None


class LeaveRequest(Body):
    force: bool = False


class RotateRequest(Body):
    role: Literal["worker", "manager"]


class NodeUpdateRequest(Body):
    availability: Optional[Literal["active", "pause", "drain"]] = None
    labels_add: Labels = {}
    labels_rm: Annotated[list[LabelKey], Field(max_length=L.MAX_LABELS)] = []
    labels: Optional[Labels] = None


class RaftJoinRequest(Body):
    members: Optional[list[str]] = Field(default=None, max_length=64)  # the list the caller's replica runs with


class RemoteJoinRequest(Body):
    token: str = Field(min_length=1, max_length=L.MAX_TOKEN)
    csr: str = Field(min_length=1, max_length=L.MAX_CSR)
    hostname: Hostname
    addr: Addr
    manager_addr: Addr
    raft_addr: Addr
    engine_labels: Labels = {}
    resources: Annotated[dict[Annotated[str, StringConstraints(max_length=64)], Annotated[float, Field(ge=0)]],
                         Field(max_length=L.MAX_RESOURCES)] = {}
    heartbeat_period: float = Field(default=5.0, gt=0, le=3600)


class CertificateSummary(Body):
    serial: str = Field(min_length=1, max_length=64)
    not_after: str = Field(min_length=1, max_length=64)


class HeartbeatRequest(Body):
    # a newer node may describe more of itself to an older leader during a rolling upgrade
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    hostname: Optional[Hostname] = None
    addr: Optional[Addr] = None
    heartbeat_period: float = Field(default=5.0, gt=0, le=3600)
    tls: Optional[CertificateSummary] = None
    raft_running: Optional[bool] = None  # a manager's replica runs (the Raft membership reconciler reads it)


class CertificateRequest(Body):
    csr: str = Field(min_length=1, max_length=L.MAX_CSR)


class AssignmentsRequest(Body):
    since: Optional[Annotated[str, StringConstraints(max_length=L.MAX_ID)]] = None
    wait: float = Field(default=0.0, ge=0, le=10)
    deltas: Optional[bool] = None  # the agent applies deltas ({"full": false, "changed", "removed"})


class EndpointsRequest(Body):
    since: Optional[Annotated[str, StringConstraints(max_length=L.MAX_ID)]] = None
    wait: float = Field(default=0.0, ge=0, le=10)


class TaskStatusUpdate(Body):
    # a newer agent may report more of a task to an older leader during a rolling upgrade (as health came)
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    task_id: Id
    state: Literal["accepted", "preparing", "ready", "starting", "running", "complete", "shutdown", "failed",
                   "rejected"]
    message: Optional[Text] = None
    err: Optional[Text] = None
    container_id: Optional[Id] = None
    exit_code: Optional[int] = Field(default=None, ge=-(2 ** 31), le=2 ** 31 - 1)
    health: Optional[Literal["starting", "healthy", "unhealthy"]] = None
    health_output: Optional[Text] = None


class TaskStatusRequest(Body):
    updates: list[TaskStatusUpdate] = Field(max_length=L.MAX_STATUS_UPDATES)


class Resources(Body):
    cpus: Optional[float] = Field(default=None, ge=0, le=L.MAX_CPUS)
    memory: Optional[int] = Field(default=None, ge=0, le=L.MAX_MEMORY)


class ResourceRequirements(Body):
    reservations: Optional[Resources] = None
    limits: Optional[Resources] = None


class RestartPolicy(Body):
    condition: Optional[Literal["none", "on-failure", "any"]] = None
    delay: Optional[Duration] = None
    max_attempts: Optional[Count] = None
    window: Optional[Duration] = None


# {"spread": "node.labels.zone"}: the strategy and its argument, checked by services.validate_spec
Preference = Annotated[dict[Annotated[str, StringConstraints(max_length=64)], Constraint], Field(max_length=4)]


class Placement(Body):
    constraints: Optional[Annotated[list[Constraint], Field(max_length=L.MAX_CONSTRAINTS)]] = None
    preferences: Optional[Annotated[list[Preference], Field(max_length=L.MAX_CONSTRAINTS)]] = None
    max_replicas_per_node: Optional[int] = Field(default=None, ge=0, le=L.MAX_REPLICAS)
    strategy: Optional[Literal["spread", "binpack", "random"]] = None


class HealthCheck(Body):
    """Docker's HealthConfig in seconds: test ["CMD-SHELL", cmd] | ["CMD", arg...] | ["NONE"] | [] (the image's)."""
    test: Optional[Args] = None
    interval: Optional[Duration] = None
    timeout: Optional[Duration] = None
    retries: Optional[Count] = None
    start_period: Optional[Duration] = None
    start_interval: Optional[Duration] = None


def _mode(value: int) -> int:
    if not 0 <= value <= 0o7777:
        raise ValueError("expected a file mode between 0 and 0o7777, e.g. 292 (0444)")
    return value


FileName = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_SECRET_NAME)]  # checked by manager/secrets
FileTarget = Annotated[str, StringConstraints(max_length=L.MAX_FILE_TARGET, pattern=r"^[^\x00]*$")]
Owner = Annotated[str, StringConstraints(min_length=1, max_length=10, pattern=r"^[0-9]+$")]
FileMode = Annotated[int, Field(ge=0, le=0o7777), AfterValidator(_mode)]


class SecretReference(Body):
    """A secret a task mounts: at /run/secrets/<target> (target default: the name; an absolute one as it is)."""
    secret_id: Optional[Id] = None
    secret_name: Optional[FileName] = None
    target: Optional[FileTarget] = None
    uid: Optional[Owner] = None
    gid: Optional[Owner] = None
    mode: Optional[FileMode] = None


class ConfigReference(Body):
    """A config a task mounts: at <target> (default /<name>; a relative one under /)."""
    config_id: Optional[Id] = None
    config_name: Optional[FileName] = None
    target: Optional[FileTarget] = None
    uid: Optional[Owner] = None
    gid: Optional[Owner] = None
    mode: Optional[FileMode] = None


Path = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_FILE_TARGET, pattern=r"^[^\x00]*$")]
Word = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
Options = Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], Annotated[
    str, StringConstraints(max_length=L.MAX_LABEL_VALUE)]], Field(max_length=64)]


class DriverConfig(Body):
    name: Word
    options: Optional[Options] = None


class Mount(Body):
    """A mount of the task's container (Docker's Mount): bind (an absolute host path), volume (named, or
    anonymous without source) or tmpfs (no source)."""
    type: Literal["bind", "volume", "tmpfs"]
    source: Optional[Path] = None
    target: Path
    readonly: bool = False
    propagation: Optional[Literal["shared", "slave", "private", "rshared", "rslave", "rprivate"]] = None
    no_copy: Optional[bool] = None
    labels: Optional[Labels] = None
    driver_config: Optional[DriverConfig] = None
    tmpfs_size: Optional[int] = Field(default=None, ge=0, le=L.MAX_MEMORY)
    tmpfs_mode: Optional[FileMode] = None


class LogDriver(Body):
    """Docker's TaskTemplate.LogDriver: the container's LogConfig."""
    name: Word
    options: Optional[Options] = None


class Ulimit(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    soft: int = Field(ge=-1, le=2 ** 63 - 1)
    hard: int = Field(ge=-1, le=2 ** 63 - 1)


Words = Annotated[list[Word], Field(max_length=64)]


class TaskSpec(Body):
    image: Optional[str] = Field(default=None, max_length=L.MAX_IMAGE)
    command: Optional[Args] = None
    args: Optional[Args] = None
    env: Optional[Annotated[dict[EnvKey, EnvValue], Field(max_length=L.MAX_ENV)]] = None
    network_mode: Optional[Literal["host", "none"]] = None
    resources: Optional[ResourceRequirements] = None
    restart_policy: Optional[RestartPolicy] = None
    placement: Optional[Placement] = None
    stop_grace_period: Optional[Duration] = None
    healthcheck: Optional[HealthCheck] = None
    hostname: Optional[Hostname] = None
    secrets: Optional[Annotated[list[SecretReference], Field(max_length=L.MAX_FILE_REFS)]] = None
    configs: Optional[Annotated[list[ConfigReference], Field(max_length=L.MAX_FILE_REFS)]] = None
    user: Optional[Arg] = None  # USER[:GROUP] in the container ("" or left out: the image's)
    working_dir: Optional[Arg] = None  # the container's working directory ("" or left out: the image's)
    labels: Optional[Labels] = None  # container labels (service labels are the service's own `labels`)
    dns_search: Optional[Annotated[list[Hostname], Field(max_length=6)]] = None  # resolv.conf search domains
    mounts: Optional[Annotated[list[Mount], Field(max_length=L.MAX_MOUNTS)]] = None
    log_driver: Optional[LogDriver] = None  # null: json-file rotated at runtime.base.LOG_DEFAULTS
    read_only: Optional[bool] = None  # the root filesystem read-only
    init: Optional[bool] = None  # an init process (docker-init) as PID 1
    tty: Optional[bool] = None
    cap_add: Optional[Words] = None  # Docker's capability names: NET_ADMIN or CAP_NET_ADMIN, ALL
    cap_drop: Optional[Words] = None
    sysctls: Optional[Annotated[dict[Word, Annotated[str, StringConstraints(max_length=1024)]],
                                Field(max_length=64)]] = None
    ulimits: Optional[Annotated[list[Ulimit], Field(max_length=32)]] = None
    dns: Optional[Annotated[list[Addr], Field(max_length=8)]] = None  # nameservers after the node's mesh DNS
    dns_options: Optional[Words] = None  # resolv.conf options (ndots:2, ...)
    hosts: Optional[Annotated[dict[Hostname, Addr], Field(max_length=256)]] = None  # /etc/hosts: name -> IP
    stop_signal: Optional[Annotated[str, StringConstraints(min_length=1, max_length=32)]] = None
    groups: Optional[Words] = None  # additional groups of the container's user (GroupAdd)


Port = Annotated[int, Field(ge=1, le=65535)]


class UpdateConfig(Body):
    """--update-* / --rollback-* (Docker's UpdateConfig), and swarmctl's two deadlines, in seconds."""
    parallelism: Optional[int] = Field(default=None, ge=0, le=L.MAX_REPLICAS)
    delay: Optional[Duration] = None
    order: Optional[Literal["stop-first", "start-first"]] = None
    failure_action: Optional[Literal["pause", "continue", "rollback"]] = None
    monitor: Optional[Duration] = None
    max_failure_ratio: Optional[float] = Field(default=None, ge=0, le=1)
    healthy_deadline: Optional[Annotated[float, Field(gt=0, le=L.MAX_DURATION)]] = None
    progress_deadline: Optional[Annotated[float, Field(gt=0, le=L.MAX_DURATION)]] = None


class PortConfig(Body):
    protocol: Literal["tcp", "udp"] = "tcp"
    target_port: Port
    published_port: Optional[Port] = None  # left out: the leader picks one of 30000-32767
    publish_mode: Literal["ingress", "host"] = "ingress"


class EndpointSpec(Body):
    mode: Literal["vip", "dnsrr"] = "vip"
    ports: Annotated[list[PortConfig], Field(max_length=64)] = []


def _replicas(value: int) -> int:
    if value > L.MAX_REPLICAS:
        raise ValueError(f"{value} is more than {L.MAX_REPLICAS}, the limit of replicas per service")
    return value


def _service_name(value: str) -> str:
    """swarmkit's rule and texts (controlapi.validateAnnotations)."""
    if len(value) > L.MAX_NAME:
        raise ValueError(L.NAME_LENGTH_MESSAGE)
    if not re.match(L.NAME_PATTERN, value):
        raise ValueError(L.NAME_MESSAGE)
    return value


Replicas = Annotated[int, Field(ge=0, json_schema_extra={"maximum": L.MAX_REPLICAS}), AfterValidator(_replicas)]
ServiceName = Annotated[str, Field(min_length=1, json_schema_extra={"maxLength": L.MAX_NAME, "pattern": L.NAME_PATTERN}),
                        AfterValidator(_service_name)]


class ServiceCreateRequest(Body):
    name: ServiceName
    mode: Literal["replicated", "global"] = "replicated"
    replicas: Optional[Replicas] = None
    labels: Labels = {}
    task: TaskSpec
    endpoint: Optional[EndpointSpec] = None
    update_config: Optional[UpdateConfig] = None
    rollback_config: Optional[UpdateConfig] = None
    rebalance: Optional[Literal["auto", "never"]] = None


class ServiceUpdateRequest(Body):
    replicas: Optional[Replicas] = None
    labels: Optional[Labels] = None
    task: Optional[TaskSpec] = None
    endpoint: Optional[EndpointSpec] = None
    update_config: Optional[UpdateConfig] = None
    rollback_config: Optional[UpdateConfig] = None
    rebalance: Optional[Literal["auto", "never"]] = None
    force: bool = False
    # the body is the whole new spec, as create's (what it leaves out goes back to the defaults), not changes to
    # merge into the current one: Docker's ServiceUpdate, what `stack deploy` sends
    replace: bool = False


class ScaleRequest(Body):
    replicas: Replicas


class SwarmUpdateRequest(SwarmSettings):
    default_strategy: Optional[Literal["spread", "binpack", "random"]] = None
    default_rebalance: Optional[Literal["auto", "never"]] = None
    # [low, high]: the host ports the leader gives tasks for their published targets
    task_port_range: Optional[Annotated[list[Port], Field(min_length=2, max_length=2)]] = None


# base64 of at most MAX_CONFIG_SIZE bytes; the exact limits (and Docker's texts) are manager/secrets.py's
FileData = Annotated[str, StringConstraints(max_length=(L.MAX_CONFIG_SIZE + 2) // 3 * 4)]


class SecretCreateRequest(Body):
    """A secret or config: name, labels and the data in base64."""
    name: FileName
    labels: Labels = {}
    data: FileData


class SecretUpdateRequest(Body):
    """Only labels may change; a name or data that differs is refused ("only updates to Labels are allowed")."""
    labels: Labels = {}
    name: Optional[FileName] = None
    data: Optional[FileData] = None


class SecretMatchRequest(Body):
    data: FileData


class TaskFilesRequest(Body):
    task_id: Id


# ---- query strings ----------------------------------------------------------------------------------
class Query(BaseModel):
    """Query parameters of a route: unknown ones are ignored, as browsers and proxies add their own."""
    model_config = ConfigDict(extra="ignore")


class VersionQuery(Query):
    version: Optional[int] = Field(
        default=None, ge=0, le=L.MAX_VERSION,
        description="The `version` of the record the change was computed from. A stale one is refused with 409 "
                    "`update out of sequence`. Without it the change applies to the record as it is when the "
                    "leader handles the request.")


class ForceQuery(Query):
    force: Optional[Literal["1", "true", "yes", "0", "false", "no", ""]] = None


class EventsQuery(Query):
    since: Optional[float] = Field(default=None, ge=0, le=1e11,
                                   description="Unix time (seconds): replay the kept history from then on")
    until: Optional[float] = Field(default=None, ge=0, le=1e11,
                                   description="Unix time (seconds): end the stream then")


class TailQuery(Query):
    tail: Optional[int] = Field(default=None, ge=0, le=L.MAX_LOG_TAIL)


class AgentLogsQuery(TailQuery):
    since: Optional[float] = Field(default=None, ge=0)  # seconds since the epoch
    timestamps: bool = False  # answer entries [[ns, line], ...] instead of lines


class LogsQuery(TailQuery):
    since: Optional[float] = Field(default=None, ge=0)  # seconds since the epoch
    follow: bool = False


class ImageQuery(Query):
    name: str = Field(default="", max_length=L.MAX_IMAGE)
