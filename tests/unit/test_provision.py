"""The provision command's event rendering and per-host summary (ansible-runner's stats shape)."""

import io

from swarmctl.cli import provision


def test_summary_names_failed_and_unreachable_hosts():
    stats = {"ok": {"m1": 5, "w1": 3}, "changed": {"m1": 2}, "failures": {"w1": 1}, "dark": {"w2": 1},
             "skipped": {}, "processed": {"m1": 1, "w1": 1, "w2": 1}}
    rows, bad = provision.summarize(stats)
    assert rows == [["m1", "5", "2", "0", "0"], ["w1", "3", "0", "1", "0"], ["w2", "0", "0", "0", "1"]]
    assert bad == ["w1", "w2"]
    assert provision.summarize(None) == ([], [])


def test_progress_lines():
    out = io.StringIO()
    progress = provision.Progress(verbose=False, out=out)
    progress({"event": "playbook_on_play_start", "event_data": {"play": "Form the swarm"}})
    progress({"event": "playbook_on_task_start", "event_data": {"task": "Join workers"}})
    progress({"event": "runner_on_ok", "event_data": {"host": "w1", "res": {"changed": True}}})
    progress({"event": "runner_on_ok", "event_data": {"host": "w2", "res": {"changed": False}}})
    progress({"event": "runner_on_unreachable", "event_data": {"host": "w3", "res": {"msg": "ssh: connect refused"}}})
    text = out.getvalue()
    assert "PLAY Form the swarm" in text
    assert "w1" in text and "changed" in text and "Join workers" in text
    assert "w2" not in text
    assert "UNREACHABLE" in text and "connect refused" in text


def test_extra_vars():
    assert provision._extra_vars(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    try:
        provision._extra_vars(["nokey"])
    except provision.CLIError as exc:
        assert "KEY=VALUE" in str(exc)
    else:
        raise AssertionError("accepted a bad extra var")
