"""Request bodies of the API, validated with pydantic; unknown fields are refused."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Empty(Body):
    pass


class InitRequest(Body):
    advertise_addr: Optional[str] = None
    listen_addr: Optional[str] = None
    force_new_cluster: bool = False
    autolock: bool = False


class JoinRequest(Body):
    token: str = Field(min_length=1)
    remote_addr: str = Field(min_length=1)
    advertise_addr: Optional[str] = None
    listen_addr: Optional[str] = None


class LeaveRequest(Body):
    force: bool = False


class RotateRequest(Body):
    role: Literal["worker", "manager"]


class NodeUpdateRequest(Body):
    availability: Optional[Literal["active", "pause", "drain"]] = None
    labels_add: dict[str, str] = {}
    labels_rm: list[str] = []
    labels: Optional[dict[str, str]] = None


class RemoteJoinRequest(Body):
    token: str = Field(min_length=1)
    csr: str = Field(min_length=1)
    hostname: str = Field(min_length=1)
    addr: str
    manager_addr: str
    raft_addr: str
    engine_labels: dict[str, str] = {}
    resources: dict[str, float] = {}
    heartbeat_period: float = Field(default=5.0, gt=0)


class CertificateSummary(Body):
    serial: str = Field(min_length=1, max_length=64)
    not_after: str = Field(min_length=1, max_length=64)


class HeartbeatRequest(Body):
    # a newer node may describe more of itself to an older leader during a rolling upgrade
    model_config = ConfigDict(extra="ignore")
    hostname: Optional[str] = None
    addr: Optional[str] = None
    heartbeat_period: float = Field(default=5.0, gt=0)
    tls: Optional[CertificateSummary] = None


class CertificateRequest(Body):
    csr: str = Field(min_length=1)


class AssignmentsRequest(Body):
    since: Optional[str] = None
    wait: float = Field(default=0.0, ge=0, le=10)


class TaskStatusUpdate(Body):
    task_id: str
    state: Literal["accepted", "preparing", "ready", "starting", "running", "complete", "shutdown", "failed",
                   "rejected"]
    message: Optional[str] = None
    err: Optional[str] = None
    container_id: Optional[str] = None
    exit_code: Optional[int] = None


class TaskStatusRequest(Body):
    updates: list[TaskStatusUpdate]


class Resources(Body):
    cpus: Optional[float] = Field(default=None, ge=0)
    memory: Optional[int] = Field(default=None, ge=0)


class ResourceRequirements(Body):
    reservations: Optional[Resources] = None
    limits: Optional[Resources] = None


class RestartPolicy(Body):
    condition: Optional[Literal["none", "on-failure", "any"]] = None
    delay: Optional[float] = Field(default=None, ge=0)
    max_attempts: Optional[int] = Field(default=None, ge=0)
    window: Optional[float] = Field(default=None, ge=0)


class Placement(Body):
    constraints: Optional[list[str]] = None
    max_replicas_per_node: Optional[int] = Field(default=None, ge=0)
    strategy: Optional[Literal["spread", "binpack", "random"]] = None


class TaskSpec(Body):
    image: Optional[str] = None
    command: Optional[list[str]] = None
    args: Optional[list[str]] = None
    env: Optional[dict[str, str]] = None
    network_mode: Optional[Literal["host", "none"]] = None
    resources: Optional[ResourceRequirements] = None
    restart_policy: Optional[RestartPolicy] = None
    placement: Optional[Placement] = None
    stop_grace_period: Optional[float] = Field(default=None, ge=0)


class ServiceCreateRequest(Body):
    name: str = Field(min_length=1, max_length=63)
    mode: Literal["replicated", "global"] = "replicated"
    replicas: Optional[int] = Field(default=None, ge=0)
    labels: dict[str, str] = {}
    task: TaskSpec


class ServiceUpdateRequest(Body):
    replicas: Optional[int] = Field(default=None, ge=0)
    labels: Optional[dict[str, str]] = None
    task: Optional[TaskSpec] = None
    force: bool = False


class ScaleRequest(Body):
    replicas: int = Field(ge=0)


class SwarmUpdateRequest(Body):
    default_strategy: Optional[Literal["spread", "binpack", "random"]] = None
    # seconds; at least one minute (Swarm: an hour), at most the root CA's remaining life in practice
    node_cert_expiry: Optional[float] = Field(default=None, ge=60, le=20 * 365 * 24 * 3600)
