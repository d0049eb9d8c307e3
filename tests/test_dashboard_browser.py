"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which
``.ci/run`` installs): the page loads, its charts draw from a seeded log, and every number on the
page equals ``bandit report --json`` on the same log. Nothing is downloaded at run time: selenium
is given the system chromedriver and chromium binaries.

``BANDIT_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also saves the screenshot the README shows.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import service_unavailable
from dashboard_helpers import (
    KEY,
    READ_TOKEN,
    Clock,
    seed_traffic,
    settings_for,
    settled_report,
)

from bandit_engine.server import Secret, open_server


def _binaries() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        service_unavailable(
            "chromium",
            "no chromium / chromedriver on PATH: apt-get install chromium chromium-driver "
            "(.ci/run does)",
        )
    assert browser is not None and driver is not None
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real uvicorn server on a seeded log: ``(base url, db)``."""
    import uvicorn

    clock = Clock()
    port = _free_port()
    settings = settings_for(
        tmp_path,
        port=port,
        role_tokens={"read": Secret(READ_TOKEN.encode())},
        # a large epsilon: on 240 decisions a small one leaves rates undefined (noise > counts)
        public_dp_epsilon=50.0,
        dp_budget=100.0,
        dp_cap=10,
    )
    app, log = open_server(settings, hmac_key=KEY, clock=clock)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    with httpx.Client(base_url=base, timeout=30) as c:
        seed_traffic(c, clock)  # type: ignore[arg-type]
    try:
        yield base, settings.db
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, chromedriver = _binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2000",
    ):
        opts.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    except Exception as exc:  # a browser that cannot start is the missing service
        service_unavailable("chromium", f"{type(exc).__name__}: {exc}")
    try:
        yield driver
    finally:
        driver.quit()


def _lookup(report: dict[str, Any], key: str) -> Any:
    """The report's value at a page's ``data-k`` path (``kind/part/.../field``)."""
    kind, *rest = key.split("/")
    if kind == "totals":
        return report["totals"][rest[0]]
    if kind == "groups":
        (g,) = [x for x in report["groups"] if x["group"] == rest[0]]
        return g[rest[1]]
    if kind == "uplift":
        b, s, h, m, f = rest
        (u,) = [
            x
            for x in report["uplift"]
            if (x["breakdown"], x["segment"], x["holdout"], x["metric"]) == (b, s, h, m)
        ]
        return u[f]
    if kind == "segments":
        b, s, g, m, f = rest
        (x,) = [
            x
            for x in report["segments"]
            if (x["breakdown"], x["segment"], x["group"], x["metric"]) == (b, s, g, m)
        ]
        return x[f]
    if kind == "conversion":
        s, g, f = rest
        (x,) = [x for x in report["conversion"] if (x["segment"], x["group"]) == (s, g)]
        return x[f]
    raise AssertionError(f"unexpected data-k {key!r}")


def _wait_drawn(driver: Any, timeout: float = 30.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.getAttribute('data-drawn')") == "1"
    )


def test_dashboard_draws_and_shows_the_numbers_of_bandit_report(
    server: tuple[str, str], browser: Any
) -> None:
    import json

    base, db = server
    expected = settled_report(db)
    # the token goes in the fragment: the browser never sends it to the server
    browser.get(f"{base}/dashboard#token={READ_TOKEN}")
    _wait_drawn(browser)
    # the background refresh may lag the log by a refresh: reload until the page is current
    deadline = time.monotonic() + 30
    while True:
        shown = browser.execute_script(
            "return Array.from(document.querySelectorAll('[data-k]'))"
            ".map(e => [e.getAttribute('data-k'), e.getAttribute('data-v'), e.textContent])"
        )
        values = {k: json.loads(v) for k, v, _ in shown}
        if values.get("totals/decisions") == expected["totals"]["decisions"] and all(
            values[k] == _lookup(expected, k) for k in values if not k.startswith("health/")
        ):
            break
        assert time.monotonic() < deadline, "the page never showed the report's numbers"
        time.sleep(0.2)
        browser.refresh()
        _wait_drawn(browser)
    assert "#token" not in browser.current_url  # dropped from the address bar
    keys = {k for k, _, _ in shown}
    kinds = {k.split("/")[0] for k in keys}
    assert {"totals", "groups", "uplift", "segments", "conversion", "health"} <= kinds
    assert sum(k.startswith("uplift/") for k in keys) >= 2 * 6  # policy vs uniform, each metric
    for k, v, text in shown:
        assert text.strip(), f"{k} shows nothing"
        if not k.startswith("health/"):
            assert json.loads(v) == _lookup(expected, k), k
    # every chart drew marks (lines, points, bars, intervals)
    for chart in ("chart-uplift", "chart-ctr", "chart-orders", "chart-revenue", "chart-bundles"):
        marks = browser.execute_script(
            f"return document.querySelectorAll('#{chart} svg .mark').length"
        )
        assert marks > 0, chart
    lines = browser.execute_script("return document.querySelectorAll('#chart-ctr path.series')")
    assert len(lines) == len(expected["groups"])  # one line per group
    shot = os.environ.get("BANDIT_DASHBOARD_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)
    assert not browser.get_log("browser") or all(
        e["level"] != "SEVERE" for e in browser.get_log("browser")
    )


def test_public_view_draws_its_releases(server: tuple[str, str], browser: Any) -> None:
    base, _ = server
    browser.get(f"{base}/dashboard/public")
    _wait_drawn(browser)
    n = browser.execute_script("return document.querySelectorAll('#t-dp [data-k$=\"/value\"]')")
    assert len(n) == 2 + 2 * 2 + 2  # counts, click and order rates per group, their uplifts
    marks = browser.execute_script("return document.querySelectorAll('#chart-dp svg .mark')")
    assert len(marks) > 0
    spent = browser.execute_script(
        "return document.querySelector('[data-k=\"ledger/spent_epsilon\"]').getAttribute('data-v')"
    )
    assert float(spent) == 50.0
