"""The trace viewer in a real browser: headless Chromium (Debian's) driven by Playwright, against a
local sidecar fed over UDP and TCP like an application would feed it; the main views again in
Debian's Firefox ESR (over WebDriver BiDi).

One Chromium and one sidecar for the module; tests/run.sh installs the browsers if they are missing.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sidecar_helpers import BASE, post, wait_until

from tracekit._shared import stats as _stats
from tracekit.sidecar import ingest
from tracekit.sidecar.runtime import Sidecar

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from viewer_sample import send, shop_trace  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
EVIL = '<img src=x onerror="window.__pwned=1">'
EVIL_TRACE = "1-6b0705a8-0000000000000000000e0e0e"


class Shop:
    """The module's sidecar, the base URL of its viewer and the traces it was sent."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.url = "http://{}:{}/".format(*sidecar.admin.address())
        self.emf = next(listener for listener in sidecar.listeners if listener.name == "emf")
        self.ids: list[str] = []

    def order(self, number: int, fail: bool = False, start: float | None = None) -> str:
        trace_id, documents, line = shop_trace(number, start or time.time() - 60 + number, fail=fail)
        send(self.sidecar.udp.address(), self.emf.address(), documents, [line])
        self.ids.append(trace_id)
        return trace_id


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    _stats.reset()
    db = tmp_path_factory.mktemp("viewer") / "traces.db"
    sidecar = Sidecar(replace(BASE, local=True, local_db=db, emf_address=("127.0.0.1", 0),
                              otlp_address=None))
    ingest.attach(sidecar)
    sidecar.start()
    shop = Shop(sidecar)
    for number in (1, 2, 3):
        shop.order(number, fail=number == 2)
    wait_until(lambda: _stats.stats().get("sidecar.local.stored") == 6
               and _stats.stats().get("sidecar.local.emf.stored") == 3)
    yield shop
    sidecar.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: run tests/run.sh (it installs chromium and chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, shop: Shop) -> Iterator[Any]:
    """A fresh page; any script error, dialog or request off the viewer's origin fails the test.

    The page's Content-Security-Policy is bypassed: it would stop injected inline scripts by itself,
    and the escaping test must show that the page never turns data into markup in the first place.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("request", lambda req: None if req.url.startswith(shop.url) else problems.append(req.url))
    page.set_default_timeout(8000)
    yield page
    assert page.evaluate("window.__pwned") is None
    context.close()
    assert problems == []


def rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#trace-rows tr", "rows => rows.map(r => r.dataset.traceId)")


def wait_rows(page: Any, expected: list[str]) -> None:
    """Until the list shows exactly ``expected`` (a list still showing the last query must not pass)."""
    page.wait_for_function("""ids => JSON.stringify(ids) === JSON.stringify(
        [...document.querySelectorAll('#trace-rows tr')].map(r => r.dataset.traceId))""", arg=expected)


def texts(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "es => es.map(e => e.textContent)")


def test_a_trace_sent_over_udp_appears_in_the_open_list(page: Any, shop: Shop) -> None:
    page.goto(shop.url)
    page.wait_for_selector(f"#trace-rows tr[data-trace-id='{shop.ids[-1]}']")
    assert rows(page) == shop.ids[::-1]
    new = shop.order(4, start=time.time())  # the page polls: no reload
    page.wait_for_selector(f"#trace-rows tr[data-trace-id='{new}']")
    assert rows(page)[0] == new
    cells = texts(page, f"tr[data-trace-id='{shop.ids[1]}'] td")
    assert cells[1:] == ["frontend", "POST /checkout", "120.0 ms", "500 fault", "7"]


def test_waterfall_order_nesting_and_widths_follow_the_documents(page: Any, shop: Shop) -> None:
    failed = shop.ids[1]
    page.goto(shop.url + f"#/trace/{failed}")
    page.wait_for_selector("#waterfall .bar")
    drawn = page.eval_on_selector_all("#waterfall .row[role=treeitem]", """rows => rows.map(r => {
        const bar = r.querySelector('.bar'), track = r.querySelector('.track').getBoundingClientRect();
        const box = bar.getBoundingClientRect();
        return [r.querySelector('.name').textContent, Number(r.getAttribute('aria-level')), bar.className,
                (box.left - track.left) / track.width, box.width / track.width];
    })""")
    expected = [  # name, level, namespace, status, offset ms, duration ms (from viewer_sample.py)
        ("frontend", 1, "local", "fault", 0, 120), ("validate cart", 2, "local", "ok", 2, 5),
        ("DynamoDB", 2, "aws", "ok", 8, 8), ("orders", 2, "remote", "fault", 20, 90),
        ("orders", 3, "local", "fault", 25, 80), ("postgres", 4, "remote", "ok", 30, 30),
        ("payments.example.com", 4, "remote", "fault", 62, 38),
    ]
    assert [(d[0], d[1]) for d in drawn] == [(e[0], e[1]) for e in expected]
    for (name, _, namespace, status, offset, duration), (_, _, classes, left, width) in zip(
        expected, drawn, strict=True
    ):
        assert f"ns-{namespace}" in classes and f"st-{status}" in classes, name
        assert left == pytest.approx(offset / 120, abs=0.005), name
        assert width == pytest.approx(duration / 120, abs=0.005), name


def test_details_panel_keyboard_and_export(page: Any, shop: Shop) -> None:
    failed = shop.ids[1]
    page.goto(shop.url + f"#/trace/{failed}")
    page.click("#waterfall .bar >> nth=6")
    details = page.inner_text("#details")
    assert "payments.example.com" in details and "PaymentDeclined: card declined (remote)" in details
    assert "orders/pay.py:42 in charge" in details and '"status": 503' in details
    page.click("#details summary")
    raw = json.loads(page.inner_text("#details details pre"))
    assert raw["name"] == "payments.example.com" and raw["cause"]["exceptions"][0]["id"] == "c0ffee00c0ffee00"
    page.click("#waterfall .bar >> nth=2")
    assert '"table_name": "carts"' in page.inner_text("#details .detail-aws")
    page.click("#waterfall .bar >> nth=5")
    assert "SELECT * FROM stock" in page.inner_text("#details .detail-sql")

    page.focus("#waterfall .bar >> nth=0")
    page.keyboard.press("ArrowDown")
    assert page.inner_text("#details h3") == "validate cart"
    page.keyboard.press("End")
    assert page.inner_text("#details h3") == "payments.example.com"

    href = page.get_attribute("#trace-export", "href")
    assert href == f"/api/traces/{failed}/export"
    exported = page.evaluate("href => fetch(href).then(r => r.json())", href)
    assert exported["Traces"][0]["Id"] == failed
    segments = [json.loads(s["Document"]) for s in exported["Traces"][0]["Segments"]]
    assert sorted(s["name"] for s in segments) == ["frontend", "orders"]
    emf = page.eval_on_selector_all("#emf-table tbody tr", "rs => rs.map(r => r.textContent)")
    assert len(emf) == 1 and "OrderLatency" in emf[0] and "90" in emf[0]


def test_filters_narrow_the_list(page: Any, shop: Shop) -> None:
    page.goto(shop.url)
    page.wait_for_selector("#trace-rows tr")
    page.select_option("#f-status", "fault")
    page.click("#filters button[type=submit]")
    wait_rows(page, [shop.ids[1]])
    assert "status=fault" in page.url
    page.click("#f-reset")
    wait_rows(page, shop.ids[::-1])  # the list without filters is back before the next one is typed
    page.fill("#f-annotation", "customer=c-3")
    page.press("#f-annotation", "Enter")
    wait_rows(page, [shop.ids[2]])
    page.goto(shop.url + "#/traces?min_ms=500")
    page.wait_for_selector("#trace-empty:not([hidden])")
    page.goto(shop.url + "#/traces?q=postgres&service=frontend")
    page.wait_for_function("document.querySelectorAll('#trace-rows tr').length >= 3")
    assert page.input_value("#f-service") == "frontend" and page.input_value("#f-text") == "postgres"
    page.goto(shop.url + "#/traces?annotation=oops")
    assert "key=value" in page.wait_for_selector("#filter-error:has-text('key=value')").inner_text()


def test_service_map_nodes_edges_and_click_to_filter(page: Any, shop: Shop) -> None:
    page.goto(shop.url + "#/map")
    page.wait_for_selector("#map .node")
    nodes = set(page.eval_on_selector_all("#map .node", "ns => ns.map(n => n.dataset.name)"))
    assert {"client", "frontend", "orders", "DynamoDB", "postgres", "payments.example.com"} <= nodes
    edges = set(map(tuple, page.eval_on_selector_all(
        "#map .edge", "es => es.map(e => [e.dataset.source, e.dataset.target])")))
    assert {("client", "frontend"), ("frontend", "DynamoDB"), ("frontend", "orders"),
            ("orders", "postgres"), ("orders", "payments.example.com")} <= edges
    call = texts(page, "#edge-rows tr:has(td:text-is('frontend')):has(td:text-is('orders')) td")
    assert int(call[2]) >= 3 and call[4].endswith("%") and call[5] == "90.0"
    assert "has-fault" in page.get_attribute("#map .node[data-name='payments.example.com']", "class")
    page.focus("#map .node[data-name='orders']")
    page.keyboard.press("Enter")
    page.wait_for_url("**#/traces?service=orders")
    page.wait_for_selector("#trace-rows tr")
    assert page.input_value("#f-service") == "orders"
    assert EVIL_TRACE not in rows(page)


def test_metrics_and_sampling_views(page: Any, shop: Shop) -> None:
    page.goto(shop.url + "#/metrics")
    caption = page.wait_for_selector(".metric[data-metric='shop/OrderLatency'] figcaption").inner_text()
    assert "Milliseconds" in caption and "points" in caption
    assert page.eval_on_selector_all(".metric circle", "cs => cs.length") >= 3

    report = {"SamplingStatisticsDocuments": [{
        "RuleName": "Default", "ClientID": "b" * 24, "Timestamp": time.time(), "RequestCount": 12,
        "SampledCount": 3, "BorrowCount": 1}]}
    assert post("http://{}:{}/SamplingTargets".format(*shop.sidecar.proxy.address()),
                json.dumps(report).encode())[0] == 200
    page.goto(shop.url + "#/sampling")
    page.wait_for_selector("#rule-rows tr[data-rule='Default'] td.requests:has-text('12')")
    cells = texts(page, "#rule-rows tr[data-rule='Default'] td")
    assert cells[5:8] == ["12", "3", "1"] and cells[8] == "—"


def test_values_from_documents_are_text_never_markup(page: Any, shop: Shop) -> None:
    now = time.time()
    evil = {
        "name": EVIL, "id": "e0e0e0e0e0e0e0e0", "trace_id": EVIL_TRACE, "start_time": now,
        "end_time": now + 0.01, "error": True,
        "annotations": {"<b>key</b>": "<script>window.__pwned=2</script>"},
        "http": {"request": {"method": "GET", "url": "javascript:window.__pwned=3"}},
        "links": [{"trace_id": "javascript:window.__pwned=4", "id": "x"},
                  {"trace_id": shop.ids[0], "id": "0000000100000001"}],
        "subsegments": [{"name": "<svg onload=window.__pwned=5>", "id": "e1e1e1e1e1e1e1e1",
                         "namespace": "remote", "start_time": now, "end_time": now + 0.005,
                         "cause": {"exceptions": [{"type": "<i>X</i>", "stack": "not a list",
                                                   "message": "<a href=javascript:1>m</a>"}]}},
                        {"name": "wild", "id": "e2e2e2e2e2e2e2e2", "start_time": now, "end_time": now + 0.001,
                         "links": {"not": "a list"}, "annotations": "text", "cause": {"exceptions": 3}}],
    }
    send(shop.sidecar.udp.address(), None, [evil])
    shop.ids.append(EVIL_TRACE)
    page.goto(shop.url)
    page.wait_for_selector(f"#trace-rows tr[data-trace-id='{EVIL_TRACE}']")
    assert page.inner_text(f"tr[data-trace-id='{EVIL_TRACE}'] td >> nth=1") == EVIL
    page.click(f"tr[data-trace-id='{EVIL_TRACE}'] a")
    page.wait_for_selector("#waterfall .bar")
    assert page.inner_text("#waterfall .name >> nth=0") == EVIL
    details = page.inner_text("#details")
    assert "<script>window.__pwned=2</script>" in details and "<b>key</b>" in details
    assert "javascript:window.__pwned=3" in details
    links = page.eval_on_selector_all("#details .links a", "as => as.map(a => a.getAttribute('href'))")
    assert links == [f"#/trace/{shop.ids[0]}"]  # the javascript: one stayed text
    page.click("#waterfall .bar >> nth=1")
    assert "<i>X</i>: <a href=javascript:1>m</a>" in page.inner_text("#details .cause")
    page.click("#waterfall .bar >> nth=2")  # values of the wrong type are left out, not fatal
    assert page.inner_text("#details h3") == "wild"
    injected = "a[href^='javascript' i], img, script:not([src]), svg svg, i, b"
    assert page.eval_on_selector_all(injected, "es => es.length") == 0
    page.goto(shop.url + "#/map")
    page.wait_for_selector("#map .node")
    assert EVIL in page.eval_on_selector_all("#map .node", "ns => ns.map(n => n.dataset.name)")
    page.click(f"#map .node[data-name='{EVIL}']")
    page.wait_for_selector(f"#trace-rows tr[data-trace-id='{EVIL_TRACE}']")


def test_the_views_work_in_firefox_too(shop: Shop) -> None:
    """Firefox ESR: the list, the waterfall's widths, details, escaping, the map and the metrics."""
    from support.firefox import BINARY, Firefox

    if not BINARY.exists():
        pytest.fail(f"no {BINARY}: run tests/run.sh (it installs firefox-esr)")
    firefox = Firefox()
    try:
        firefox.goto(shop.url)
        assert set(shop.ids) <= set(firefox.json(
            "[...document.querySelectorAll('#trace-rows tr')].map(r => r.dataset.traceId)"))
        firefox.goto(shop.url + f"#/trace/{shop.ids[1]}")
        widths = firefox.json("""[...document.querySelectorAll('#waterfall .bar')].map(b =>
            b.getBoundingClientRect().width / b.parentNode.getBoundingClientRect().width)""")
        assert widths == pytest.approx([d / 120 for d in (120, 5, 8, 90, 80, 30, 38)], abs=0.005)
        cause = firefox.json("document.querySelectorAll('#waterfall .bar')[6].click() || "
                             "document.querySelector('#details .cause').textContent")
        assert "PaymentDeclined: card declined (remote)" in cause and "orders/pay.py:42" in cause
        if EVIL_TRACE in shop.ids:  # the escaping test sent it
            firefox.goto(shop.url + f"#/trace/{EVIL_TRACE}")
            assert firefox.json("document.querySelector('#waterfall .name')?.textContent") == EVIL
            assert firefox.json("String(window.__pwned)", timeout=0) == "undefined"
        firefox.goto(shop.url + "#/map")
        nodes = firefox.json("[...document.querySelectorAll('#map .node')].map(n => n.dataset.name)")
        assert {"client", "frontend", "orders", "DynamoDB", "postgres", "payments.example.com"} <= set(nodes)
        firefox.goto(shop.url + "#/metrics")
        assert "OrderLatency" in firefox.json("document.querySelector('.metric figcaption')?.textContent")
    finally:
        firefox.close()
