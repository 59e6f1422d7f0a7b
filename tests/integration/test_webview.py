"""The live web view in a real browser: Debian's chromium, headless, driven by selenium and chromium-driver.

Real daemons on the private test engine; the page must show every node and task and follow a scale-up
without a reload. A screenshot is kept under $SWARMCTL_ARTIFACTS (default: a temp dir, printed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from tests.integration.harness import IP_OFFSET, SWARMCTL, check, wait_for

IMAGE = "swarmctl-test/busybox:latest"
WEB_PORT = 8888
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def artifacts_dir() -> str:
    path = os.environ.get("SWARMCTL_ARTIFACTS") or tempfile.mkdtemp(prefix="swarmctl-artifacts-")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="swarmctl-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromium and chromedriver
        shutil.rmtree(profile, ignore_errors=True)


def live_tasks(manager, service):
    tasks = check(manager.cli("service", "ps", "--format", "json", service)).json()
    return [t for t in tasks if t["desired_state"] == "running"]


def cards(driver, desired="running"):
    return driver.find_elements("css selector", f'#nodes .task[data-desired-state="{desired}"]')


def test_web_view_live_in_chromium(docker_cluster, browser):
    c = docker_cluster
    first = c.daemon(1, extra_args=["--web-addr", f"127.0.0.{11 + IP_OFFSET}:{WEB_PORT}"])
    url = f"http://{first.ip}:{WEB_PORT}/"
    others = [c.daemon(i) for i in (2, 3)]
    check(first.cli("swarm", "init", "--advertise-addr", first.ip))
    token = check(first.cli("swarm", "join-token", "-q", "worker")).out.strip()
    for d in others:
        check(d.cli("swarm", "join", "--token", token, first.addr))
    check(first.cli("service", "create", "--name", "viz", "--replicas", "3", "--stop-grace-period", "0s",
                    IMAGE, "sleep", "3600", timeout=120))

    snapshot = json.loads(urllib.request.urlopen(url + "api/snapshot", timeout=5).read())
    assert len(snapshot["nodes"]) == 3 and [s["name"] for s in snapshot["services"]] == ["viz"]

    browser.get(url)
    node_ids = {n["id"] for n in check(first.cli("node", "ls", "--format", "json")).json()}
    wait_for(lambda: {e.get_attribute("data-node-id") for e in browser.find_elements(
        "css selector", "#nodes .node[data-node-id]")} == node_ids, what="one column per node")
    leader = browser.find_elements("css selector", '.node[data-leader="true"]')
    assert [e.get_attribute("data-hostname") for e in leader] == ["node1"]
    task_ids = {t["id"] for t in live_tasks(first, "viz")}
    wait_for(lambda: {e.get_attribute("data-task-id") for e in cards(browser)} == task_ids,
             what="one card per task")
    for node in browser.find_elements("css selector", "#nodes .node"):  # each card sits in its node's column
        for card in node.find_elements("css selector", ".task"):
            task = next(t for t in live_tasks(first, "viz") if t["id"] == card.get_attribute("data-task-id"))
            assert task["node_id"] == node.get_attribute("data-node-id")
            assert IMAGE in card.get_attribute("title") and "slot:" in card.get_attribute("title")
    row = browser.find_element("css selector", '#services tr[data-service-name="viz"]')
    wait_for(lambda: row.find_element("css selector", "td[data-replicas]").get_attribute("data-replicas") == "3/3",
             what="3/3 in the services table")

    load_id = browser.execute_script("return window.swarmctlLoadId")
    browser.execute_script("window.swarmctlTestMarker = 'still-here'")
    check(first.cli("service", "scale", "-d", "viz=6"))
    scaled = time.monotonic()
    wait_for(lambda: len(cards(browser)) == 6, timeout=2.0, interval=0.05, what="6 cards within 2 s of the scale")
    seen_after = time.monotonic() - scaled
    assert browser.execute_script("return window.swarmctlLoadId") == load_id  # no reload
    assert browser.execute_script("return window.swarmctlTestMarker") == "still-here"
    wait_for(lambda: {e.get_attribute("data-task-id") for e in cards(browser)}
             == {t["id"] for t in live_tasks(first, "viz")}, what="the cards are the tasks")
    wait_for(lambda: len(browser.find_elements("css selector", '#nodes .task[data-state="running"]')) >= 6,
             timeout=60, what="6 running cards")

    path = os.path.join(artifacts_dir(), "webview.png")
    assert browser.save_screenshot(path) and os.path.getsize(path) > 0

    # scaled down, the ended tasks stay as dimmed cards; the toggle hides all but the running ones
    check(first.cli("service", "scale", "-d", "viz=4"))
    # both removed tasks must have ended (a task being stopped is still running, and the toggle shows it)
    wait_for(lambda: len(cards(browser)) == 4 and len(browser.find_elements(
        "css selector", '#nodes .task:not([data-state="running"])')) >= 2, timeout=30, what="2 ended cards")
    browser.find_element("id", "running-only").click()
    shown = [e for e in browser.find_elements("css selector", "#nodes .task") if e.is_displayed()]
    assert len(shown) == 4 and all(e.get_attribute("data-state") == "running" for e in shown)
    assert browser.execute_script("return window.swarmctlLoadId") == load_id
    print(f"\nweb view: new cards after {seen_after:.2f}s; screenshot saved to {path}")


def test_web_view_refused_off_loopback_without_auth():
    root = tempfile.mkdtemp(prefix="swarmctl-")
    try:
        data_dir, sock = os.path.join(root, "node"), os.path.join(root, "node.sock")
        ip = f"127.0.0.{12 + IP_OFFSET}"
        proc = subprocess.run(SWARMCTL + ["daemon", "--data-dir", data_dir, "--advertise-addr", ip, "--socket", sock,
                                          "--listen-addr", f"{ip}:2377", "--web-addr", f"0.0.0.0:{WEB_PORT + 1}"],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "--web-auth-file" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
        assert not os.path.exists(data_dir) and not os.path.exists(sock)  # refused before anything started
        # and with an unreadable or malformed auth file, the same one-line refusal
        bad = os.path.join(root, "auth")
        with open(bad, "w") as f:
            f.write("admin:plaintext\n")
        for auth in (bad, os.path.join(root, "missing")):
            proc = subprocess.run(SWARMCTL + ["daemon", "--data-dir", data_dir, "--advertise-addr", ip, "--socket",
                                              sock, "--web-addr", f"0.0.0.0:{WEB_PORT + 1}", "--web-auth-file", auth],
                                  capture_output=True, text=True, timeout=30)
            assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert "Traceback" not in proc.stderr
        assert not os.path.exists(data_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_web_view_basic_auth_on_a_real_daemon(cluster):
    import base64
    import urllib.error

    from swarmctl.web.auth import make_line
    path = os.path.join(cluster.root, "web-users")
    with open(path, "w") as f:
        f.write(make_line("admin", "correct horse") + "\n")
    d = cluster.daemon(4, extra_args=["--web-addr", f"127.0.0.{14 + IP_OFFSET}:{WEB_PORT}", "--web-auth-file", path])
    check(d.cli("swarm", "init", "--advertise-addr", d.ip))
    url = f"http://{d.ip}:{WEB_PORT}/api/snapshot"
    for header in (None, "Basic " + base64.b64encode(b"admin:wrong").decode()):
        request = urllib.request.Request(url, headers={"Authorization": header} if header else {})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 401 and info.value.headers["WWW-Authenticate"].startswith("Basic")
    good = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(
        b"admin:correct horse").decode()})
    snap = wait_for(lambda: (lambda s: s if s["nodes"] else None)(
        json.loads(urllib.request.urlopen(good, timeout=5).read())), what="a snapshot with the node")
    assert snap["manager"] and [n["hostname"] for n in snap["nodes"]] == ["node4"] and snap["nodes"][0]["leader"]
