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


class HeartbeatRequest(Body):
    hostname: Optional[str] = None
    addr: Optional[str] = None
    heartbeat_period: float = Field(default=5.0, gt=0)


class CertificateRequest(Body):
    csr: str = Field(min_length=1)
