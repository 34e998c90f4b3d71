"""The report page in a real headless Chromium (Debian's package, installed by envs/system-packages.sh): it loads
with no console error, no network request and every image decoded; a full-page screenshot is kept beside it.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands on the child's fd 3,
replies and events on its fd 4, JSON messages ended by NUL), with the standard library only. The test fails, and
never skips, when Chromium is missing.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from test_report import write_small_study

from hnseg.report.build import ReportOptions, build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 60


def find_chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(
        "Chromium is not installed: run `bash envs/system-packages.sh` (Debian package chromium) before the tests"
    )


class DevTools:
    """A headless Chromium and its DevTools connection over a pipe."""

    def __init__(self, binary: str, profile: Path):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # the child's ends above 9, so that moving them to 3 and 4 (by bash, below) cannot clobber either
        child_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_write = fcntl.fcntl(replies_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(commands_read)
        os.close(replies_write)
        flags = [
            "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}", "about:blank",
        ]  # fmt: skip
        launch = f'exec "$0" "$@" 3<&{child_read} 4>&{child_write}'
        self.process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", launch, binary, *flags],  # bash: fds above 9 in redirections
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(child_read, child_write),
        )
        os.close(child_read)
        os.close(child_write)
        self._next_id = 0
        self._messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._replies, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))
        self._messages.put(None)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and wait for its reply; events seen meanwhile go to self.events."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._messages.get(timeout=max(deadline - time.monotonic(), 0.1))
            if reply is None:
                raise AssertionError(f"Chromium closed the DevTools pipe during {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, seconds: float = TIMEOUT_S) -> dict:
        deadline = time.monotonic() + seconds
        seen = next((e for e in self.events if e.get("method") == event), None)
        while seen is None:
            message = self._messages.get(timeout=max(deadline - time.monotonic(), 0.1))
            if message is None:
                raise AssertionError(f"Chromium closed the DevTools pipe waiting for {event}")
            self.events.append(message)
            if message.get("method") == event:
                seen = message
        return seen

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._messages.get(timeout=left)
            except queue.Empty:
                return
            if message is None:
                return
            self.events.append(message)

    def close(self) -> str:
        """End the browser; returns what it wrote on stderr."""
        try:
            self.send("Browser.close")
        except (AssertionError, queue.Empty, OSError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        return self.process.stderr.read().decode(errors="replace")


def open_in_chromium(page: Path, screenshot: Path, profile: Path) -> dict:
    """Load `page`; return its console messages, errors, requests, images, and write a full-page screenshot."""
    browser = DevTools(find_chromium(), profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        browser.drain(1.0)
        images = browser.send(
            "Runtime.evaluate",
            {"expression": "JSON.stringify(Array.from(document.images, i => ({alt: i.alt, complete: i.complete, "
             "width: i.naturalWidth, scheme: i.currentSrc.split(':')[0]})))", "returnByValue": True},
            session,
        )["result"]["value"]  # fmt: skip
        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = browser.send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True,
             "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}},
            session,
        )  # fmt: skip
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        browser.drain(0.5)
    finally:
        stderr = browser.close()
    events = browser.events
    return {
        "console": [e["params"] for e in events if e.get("method") == "Runtime.consoleAPICalled"],
        "exceptions": [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"],
        "log": [e["params"]["entry"] for e in events if e.get("method") == "Log.entryAdded"],
        "requests": [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"],
        "failed": [e["params"] for e in events if e.get("method") == "Network.loadingFailed"],
        "images": json.loads(images),
        "page_height": size["height"],
        "stderr": stderr,
    }


def check_page(result: dict) -> None:
    errors = [c for c in result["console"] if c["type"] in ("error", "assert", "warning")]
    assert not errors, errors
    assert not result["exceptions"], result["exceptions"]
    assert not [entry for entry in result["log"] if entry["level"] in ("error", "warning")], result["log"]
    schemes = {urlparse(url).scheme for url in result["requests"]}
    assert schemes <= {"file", "data"}, result["requests"]
    assert not result["failed"], result["failed"]
    assert result["images"], "the page has no image"
    assert all(i["complete"] and i["width"] > 0 and i["scheme"] == "data" for i in result["images"]), result["images"]


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    out = root / "results" / "report"
    build_report(write_small_study(root), out, ReportOptions(bootstrap_resamples=500, qc_images_embedded=4))
    return out


def test_the_report_opens_in_chromium_without_errors_or_requests(small_report):
    screenshot = small_report / "screenshot.png"
    result = open_in_chromium(small_report / "index.html", screenshot, small_report.parent / "chromium-profile")
    check_page(result)
    assert len(result["images"]) == 3 + 4  # Figure 1 (test, val), Figure 2, four embedded qc.png
    # only the page itself was fetched from disk; every image came from a data URI
    assert [u for u in result["requests"] if not u.startswith("data:")] == [
        (small_report / "index.html").resolve().as_uri()
    ]
    assert screenshot.stat().st_size > 50_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot kept at {screenshot}")
