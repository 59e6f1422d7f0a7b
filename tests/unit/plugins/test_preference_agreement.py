"""The service module repeats the daemon's rules for placement preferences (a module may import only the
standard library): on the same inputs, svc.check_preference and swarmctl.manager.scheduler.preferences.parse
(as services.validate_spec runs it) accept and refuse alike, with the same text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from swarmctl.manager.scheduler import preferences

svc = pytest.importorskip("ansible_collections.swarmctl.cluster.plugins.modules.service")

STRATEGIES = st.sampled_from(["spread", "Spread", "pack", "", "spread "])
DESCRIPTORS = st.one_of(
    st.sampled_from(["node.labels.zone", "engine.labels.disk", "NODE.LABELS.zone", "node.labels.", "engine.labels.",
                     "node.hostname", "node.label.zone", "labels.zone", "", "node.labels.a.b", "node.labels. "]),
    st.text(max_size=20), st.integers(), st.none())
PREFS = st.one_of(st.dictionaries(STRATEGIES, DESCRIPTORS, max_size=3), st.text(max_size=5), st.none(),
                  st.lists(st.text(max_size=3), max_size=2))


def daemon(pref):
    try:
        preferences.parse(pref)
        return "ok"
    except preferences.PreferenceError as exc:
        return str(exc)


def module(pref):
    try:
        svc.check_preference(pref)
        return "ok"
    except svc.ServiceParamError as exc:
        return str(exc)


@settings(max_examples=600, deadline=None)
@given(PREFS)
def test_module_and_daemon_agree(pref):
    assert module(pref) == daemon(pref)


def test_the_prefixes_agree():
    assert daemon({"spread": "node.labels.zone"}) == module({"spread": "node.labels.zone"}) == "ok"
    assert (preferences.NODE_LABELS, preferences.ENGINE_LABELS) == ("node.labels.", "engine.labels.")
