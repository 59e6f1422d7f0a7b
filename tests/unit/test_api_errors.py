"""Which error a node answers when a request needs a manager and it has none (api/server.not_a_manager)."""

from types import SimpleNamespace

from swarmctl.api.server import FORWARDED, not_a_manager
from swarmctl.errors import NOT_A_MANAGER_MESSAGE, Misdirected, NotAManager, Unavailable


def request(forwarded: bool = False):
    return SimpleNamespace(headers={FORWARDED: "1"} if forwarded else {})


def test_a_worker_says_it_is_not_a_manager():
    error = not_a_manager(SimpleNamespace(stopping=False), request())
    assert isinstance(error, NotAManager) and error.message == NOT_A_MANAGER_MESSAGE


def test_a_manager_shutting_down_says_so_and_sends_forwarders_on():
    node = SimpleNamespace(stopping=True)
    local = not_a_manager(node, request())
    assert isinstance(local, Unavailable) and "shutting down" in local.message
    assert local.status == 503
    forwarded = not_a_manager(node, request(forwarded=True))
    assert isinstance(forwarded, Misdirected) and forwarded.status == 421  # the forwarder retries the next leader
