"""Restricted unpickling for everything Raft reads: network messages, journal entries, snapshots.

pysyncobj pickles its messages, log entries and snapshots, and a plain `pickle.loads` runs any callable
the data names: whoever can put bytes in front of it gets remote code execution. Everything swarmctl
replicates is plain data (the write batches carry dicts, lists, tuples, strings and numbers), so the
unpickler here resolves only these globals and refuses every other one with UnpicklingError:

- the built-in containers and scalars (dict, list, tuple, set, frozenset, str, bytes, bytearray, int,
  float, bool; None, True and False need no global);
- `_codecs.encode`, restricted to latin-1 text: pickle protocol 2 (pysyncobj's) writes bytes as
  `_codecs.encode(text, "latin1")`;
- `collections.OrderedDict`: the state machine's `applied` map in snapshots;
- `pysyncobj.node.Node` and `TCPNode`: members in membership commands and in snapshots.

Callables that could allocate without bound from a small input (`bytes(10**12)`) are wrapped so that they
only copy what the pickle already holds.

`install()` is the one place where pysyncobj's own loader (`pysyncobj.pickle.loads`/`load`: journal
replay, membership commands, the replicated commands, snapshot files and transfers) is replaced by this
one. swarmctl.state.raft calls it on import, so no replica runs without it.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle

import pysyncobj.journal
import pysyncobj.pickle
from pysyncobj.node import Node, TCPNode

# Pickle protocol for messages that swarmctl's transport writes: 5 has opcodes for bytes and sets,
# so a wire message needs no global at all.
WIRE_PROTOCOL = 5


def _bytes(*args):
    """bytes() as protocol 2 uses it: empty, or a copy of a bytes-like value (never bytes(n))."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray, list)):
        return bytes(args[0])
    raise pickle.UnpicklingError("refused: bytes() with these arguments")


def _bytearray(*args):
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray, list)):
        return bytearray(args[0])
    raise pickle.UnpicklingError("refused: bytearray() with these arguments")


def _encode(text, encoding="utf-8", errors="strict"):
    """_codecs.encode as protocol 2 uses it for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("refused: _codecs.encode other than latin-1 text")
    return codecs.encode(text, "latin1")


def _plain(cls):
    """A container or scalar type, called only with at most one argument of pickled data."""
    def make(*args):
        if len(args) > 1:
            raise pickle.UnpicklingError(f"refused: {cls.__name__}() with {len(args)} arguments")
        if args and cls in (int, float, str) and not isinstance(args[0], (int, float, str)):
            raise pickle.UnpicklingError(f"refused: {cls.__name__}() of {type(args[0]).__name__}")
        return cls(*args)
    make.__name__ = cls.__name__
    return make


_BUILTINS = {
    "dict": dict, "list": list, "tuple": tuple, "set": _plain(set), "frozenset": _plain(frozenset),
    "str": _plain(str), "bytes": _bytes, "bytearray": _bytearray, "int": _plain(int),
    "float": _plain(float), "bool": _plain(bool),
}

ALLOWED = {
    **{("builtins", name): value for name, value in _BUILTINS.items()},
    **{("__builtin__", name): value for name, value in _BUILTINS.items()},  # protocol 2 names
    ("_codecs", "encode"): _encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("pysyncobj.node", "Node"): Node,
    ("pysyncobj.node", "TCPNode"): TCPNode,
}


def _find(module: str, name: str):
    try:
        return ALLOWED[(module, name)]
    except KeyError:
        raise pickle.UnpicklingError(f"refused to unpickle {module}.{name}: not plain data") from None


class RestrictedUnpickler(pickle.Unpickler):
    """The C unpickler with find_class limited to ALLOWED."""

    def find_class(self, module, name):
        return _find(module, name)


class _PyRestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001 - pysyncobj's fallback for python 2 data
    def find_class(self, module, name):
        return _find(module, name)


def loads(data) -> object:
    """Unpickle data (bytes-like) allowing only plain data; raises pickle.UnpicklingError otherwise."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def load(file) -> object:
    return RestrictedUnpickler(file).load()


def dumps(obj) -> bytes:
    return pickle.dumps(obj, WIRE_PROTOCOL)


# ---- pysyncobj's own loader ---------------------------------------------------------------------
def _pysyncobj_loads(data):
    data = pysyncobj.pickle.to_bytes(data)
    try:
        return loads(data)
    except UnicodeDecodeError:  # python 2 strings: pysyncobj retries with the pure-python unpickler
        return _PyRestrictedUnpickler(io.BytesIO(data)).load()


def _pysyncobj_load(file):
    try:
        return load(file)
    except UnicodeDecodeError:
        file.seek(0, 0)
        return _PyRestrictedUnpickler(file).load()


def install() -> None:
    """Make pysyncobj unpickle through the restricted unpickler everywhere (idempotent).

    pysyncobj's modules call `pysyncobj.pickle.loads/load` through the module, except journal.py, which
    imported `loads` by name (its meta file: term, vote, commit index), so both are replaced."""
    pysyncobj.pickle.loads = _pysyncobj_loads
    pysyncobj.pickle.load = _pysyncobj_load
    pysyncobj.journal.loads = _pysyncobj_loads
