"""Errors with an HTTP status, shared by manager components, the API and the daemon.

The API turns them into {"message": ...} answers; the CLI prints the message on one line.
"""

NO_LEADER_MESSAGE = ("The swarm does not have a leader. It's possible that too few managers are online. "
                     "Make sure more than half of the managers are online.")

NOT_A_MANAGER_MESSAGE = ("This node is not a swarm manager. Worker nodes can't be used to view or modify "
                         "cluster state. Please run this command on a manager node or promote the current "
                         "node to a manager.")
NOT_IN_SWARM_MESSAGE = ("This node is not part of a swarm. Use \"swarmctl swarm init\" or "
                        "\"swarmctl swarm join\" to connect this node to a swarm.")
SWARM_LOCKED_MESSAGE = ("Swarm is encrypted and needs to be unlocked before it can be used. Please use "
                        "\"swarmctl swarm unlock\" to unlock it.")
ALREADY_IN_SWARM_MESSAGE = ("This node is already part of a swarm. Use \"swarmctl swarm leave\" to leave "
                            "this swarm and join another one.")


class APIError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(APIError):
    status = 400


class Unauthorized(APIError):
    status = 401


class Forbidden(APIError):
    status = 403


class NotFound(APIError):
    status = 404


class Conflict(APIError):
    status = 409


class OutOfSequence(Conflict):
    """An update computed from a stale read (its version is not the record's): Docker's text."""

    def __init__(self, message: str = "update out of sequence"):
        super().__init__(message)


class PreconditionFailed(APIError):
    status = 412


class Unavailable(APIError):
    status = 503


class InsufficientStorage(APIError):
    """This manager's Raft journal cannot be written (e.g. "no space left on device: cannot write the
    Raft journal PATH"); writes are refused until it can."""
    status = 507


class NotAManager(APIError):
    status = 503

    def __init__(self):
        super().__init__(NOT_A_MANAGER_MESSAGE)


class NotInSwarm(APIError):
    status = 412  # the node's state, not a passing condition: retrying the same request cannot help

    def __init__(self):
        super().__init__(NOT_IN_SWARM_MESSAGE)


class NoLeaderError(APIError):
    status = 503

    def __init__(self):
        super().__init__(NO_LEADER_MESSAGE)


class Misdirected(APIError):
    """This manager lost leadership while handling the request: the forwarder retries elsewhere."""
    status = 421


class SwarmLocked(APIError):
    """This manager was restarted under autolock and waits for `swarm unlock`."""
    status = 503

    def __init__(self):
        super().__init__(SWARM_LOCKED_MESSAGE)
