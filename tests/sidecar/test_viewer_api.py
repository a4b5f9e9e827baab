"""The viewer's JSON API, served by a local sidecar fed over UDP/TCP, and `tracekit traces serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sidecar_helpers import get, post, wait_until

from tracekit._shared import stats as _stats
from tracekit.sidecar import ingest
from tracekit.sidecar.runtime import Sidecar
from tracekit.sidecar.store import LocalStore, connect, list_traces

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from viewer_sample import send, shop_trace  # noqa: E402


def api(sidecar: Sidecar, path: str) -> Any:
    status, body = get("http://{}:{}/api/".format(*sidecar.admin.address()) + path)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture
def shop(make_sidecar: Callable[..., Sidecar], tmp_path: Path) -> tuple[Sidecar, list[str]]:
    """A local sidecar (EMF port on) that received five orders, the fourth one failed."""
    sidecar = make_sidecar(local=True, local_db=tmp_path / "t.db", emf_address=("127.0.0.1", 0),
                           otlp_address=None)
    ingest.attach(sidecar)
    emf = next(listener for listener in sidecar.listeners if listener.name == "emf")
    emf.start()
    now = time.time()
    ids, documents, lines = [], [], []
    for number in range(1, 6):
        trace_id, docs, line = shop_trace(number, now - 30 + number, fail=number == 4)
        ids.append(trace_id)
        documents += docs
        lines.append(line)
    send(sidecar.udp.address(), emf.address(), documents, lines)
    wait_until(lambda: _stats.stats().get("sidecar.udp.received") == 10
               and _stats.stats().get("sidecar.emf.received") == 5)
    assert sidecar.sink.flush(5)
    wait_until(lambda: api(sidecar, "status")["traces"] == 5)
    wait_until(lambda: _stats.stats().get("sidecar.local.emf.stored") == 5)
    return sidecar, ids


def test_trace_list_is_newest_first_with_summaries_and_filters(shop: tuple[Sidecar, list[str]]) -> None:
    sidecar, ids = shop
    page = api(sidecar, "traces")
    assert [t["trace_id"] for t in page["traces"]] == ids[::-1] and page["next"] is None
    failed = page["traces"][1]
    assert failed["trace_id"] == ids[3] and failed["fault"] and not failed["error"]
    assert (failed["root"], failed["request"], failed["status"]) == ("frontend", "POST /checkout", 500)
    assert failed["spans"] == 7 and failed["documents"] == 2
    assert failed["services"] == ["frontend", "orders"]
    assert failed["duration_ms"] == pytest.approx(120, abs=0.01)

    def matching(query: str) -> list[str]:
        return [t["trace_id"] for t in api(sidecar, "traces?" + query)["traces"]]

    assert matching("status=fault") == [ids[3]] == matching("status=problem")
    assert matching("status=ok") == [ids[4], ids[2], ids[1], ids[0]]
    assert matching("status=error") == [] == matching("service=payments")
    assert matching("service=orders") == ids[::-1]
    assert matching("annotation=" + quote("customer=c-2")) == [ids[1]]
    assert matching("q=PAYMENTS") == ids[::-1] and matching("q=nothing") == []
    assert matching("min_ms=119") == ids[::-1] and matching("min_ms=121") == []
    first = api(sidecar, "traces?limit=2")
    second = api(sidecar, "traces?limit=2&after=" + quote(first["next"]))
    third = api(sidecar, "traces?limit=2&after=" + quote(second["next"]))
    assert [t["trace_id"] for p in (first, second, third) for t in p["traces"]] == ids[::-1]
    assert third["next"] is None
    assert api(sidecar, "services") == {"services": ["frontend", "orders"]}


def test_bad_queries_are_answered_400_and_unknown_paths_404(shop: tuple[Sidecar, list[str]]) -> None:
    sidecar, _ = shop
    base = "http://{}:{}".format(*sidecar.admin.address())
    for query, word in (("status=broken", "status='broken'"), ("min_ms=abc", "min_ms='abc'"),
                        ("limit=0", "limit=0"), ("annotation=novalue", "key=value"),
                        ("after=x", "after='x'")):
        status, body = get(f"{base}/api/traces?{query}")
        assert status == 400 and word in json.loads(body)["error"], query
    for path in ("/api/traces/1-00000000-000000000000000000000000", "/api/traces/not-an-id",
                 "/api/nothing", "/static/../store.py"):
        assert get(base + path)[0] == 404, path
    assert get(base + "/health")[0] == 200  # the admin port still does its first job


def test_trace_view_has_every_entity_in_tree_order_with_details(shop: tuple[Sidecar, list[str]]) -> None:
    sidecar, ids = shop
    trace = api(sidecar, f"traces/{ids[3]}")
    rows = [(s["depth"], s["name"], s["service"], s["namespace"]) for s in trace["spans"]]
    assert rows == [
        (0, "frontend", "frontend", "local"), (1, "validate cart", "frontend", "local"),
        (1, "DynamoDB", "frontend", "aws"), (1, "orders", "frontend", "remote"),
        (2, "orders", "orders", "local"), (3, "postgres", "orders", "remote"),
        (3, "payments.example.com", "orders", "remote"),
    ]
    pay = trace["spans"][6]
    assert pay["fault"] and pay["cause"]["exceptions"][0]["stack"][0]["line"] == 42
    assert trace["spans"][2]["aws"]["table_name"] == "carts"
    assert trace["spans"][5]["sql"]["database_type"] == "PostgreSQL"
    assert trace["spans"][0]["annotations"] == {"customer": "c-4", "http_route": "/checkout"}
    assert trace["spans"][0]["document"]["subsegments"][2]["id"] == trace["spans"][3]["id"]
    assert trace["end"] - trace["start"] == pytest.approx(0.120, abs=1e-5)
    assert [v["value"] for line in trace["emf"] for v in line["values"]] == [80 + 4 % 7 * 5]

    export = api(sidecar, f"traces/{ids[3]}/export")
    (entry,) = export["Traces"]
    assert entry["Id"] == ids[3] and entry["Duration"] == pytest.approx(0.12, abs=1e-5)
    documents = {s["Id"]: json.loads(s["Document"]) for s in entry["Segments"]}
    assert {d["name"] for d in documents.values()} == {"frontend", "orders"}
    assert all(d["trace_id"] == ids[3] for d in documents.values())


def test_service_map_has_services_resources_and_edge_statistics(shop: tuple[Sidecar, list[str]]) -> None:
    sidecar, _ = shop
    graph = api(sidecar, "map?minutes=5")
    kinds = {n["name"]: n["kind"] for n in graph["nodes"]}
    assert kinds == {"client": "client", "frontend": "AWS::ECS::Container", "orders": "AWS::ECS::Container",
                     "DynamoDB": "aws", "postgres": "remote", "payments.example.com": "remote"}
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    assert set(edges) == {("client", "frontend"), ("frontend", "DynamoDB"), ("frontend", "orders"),
                          ("orders", "postgres"), ("orders", "payments.example.com")}
    call = edges[("frontend", "orders")]
    assert (call["requests"], call["faults"], call["fault_rate"], call["error_rate"]) == (5, 1, 0.2, 0.0)
    assert call["p50_ms"] == pytest.approx(90, abs=0.01) and call["p99_ms"] == pytest.approx(90, abs=0.01)
    assert edges[("frontend", "DynamoDB")]["p90_ms"] == pytest.approx(8, abs=0.01)
    assert api(sidecar, "map?minutes=0.001")["nodes"] == []  # the window leaves them out


def test_metrics_and_sampling_rules_with_live_statistics(shop: tuple[Sidecar, list[str]]) -> None:
    sidecar, _ = shop
    (series,) = api(sidecar, "metrics")["series"]
    assert (series["namespace"], series["name"], series["unit"]) == ("shop", "OrderLatency", "Milliseconds")
    assert [p[1] for p in series["points"]] == [80 + n % 7 * 5 for n in range(1, 6)]

    assert sidecar.sampling is not None
    rule = {"RuleName": "orders", "ResourceARN": "*", "Priority": 5, "FixedRate": 0.1, "ReservoirSize": 2,
            "ServiceName": "orders", "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "*",
            "Version": 1, "SamplingRateBoost": {"MaxRate": 0.5, "CooldownWindowMinutes": 1}}
    assert sidecar.sampling.handle("POST", "/CreateSamplingRule", {},
                                   json.dumps({"SamplingRule": rule}).encode())[0] == 200
    now = time.time()
    report = {"SamplingStatisticsDocuments": [{
        "RuleName": "orders", "ClientID": "c" * 24, "Timestamp": now, "RequestCount": 40,
        "SampledCount": 6, "BorrowCount": 1}], "SamplingBoostStatisticsDocuments": [{
        "RuleName": "orders", "ServiceName": "orders", "Timestamp": now, "AnomalyCount": 2,
        "TotalCount": 40, "SampledAnomalyCount": 1}]}
    status, _ = post("http://{}:{}/SamplingTargets".format(*sidecar.proxy.address()),
                     json.dumps(report).encode())  # through the sidecar's TCP port, as SDKs do
    assert status == 200
    rules = {r["SamplingRule"]["RuleName"]: r for r in api(sidecar, "sampling")["rules"]}
    seen = rules["orders"]
    assert (seen["RequestCount"], seen["SampledCount"], seen["BorrowCount"]) == (40, 6, 1)
    assert seen["BoostRate"] == 0.5 and seen["BoostUntil"] > now
    assert rules["Default"]["BoostRate"] is None


def test_paging_stays_fast_with_10000_traces(tmp_path: Path) -> None:
    """Keyset paging over the summary table: the deepest page costs what the first one does."""
    db = tmp_path / "big.db"
    store = LocalStore(db, retention=10_000, max_bytes=64 << 20)
    for i in range(10_000):
        store.submit(json.dumps({"name": f"svc{i % 7}", "id": f"{i:016x}", "trace_id": f"1-6b0705a8-{i:024x}",
                                 "start_time": 1_000.0 + i, "end_time": 1_000.5 + i, "fault": i % 10 == 0,
                                 "annotations": {"n": i}}).encode())
    assert store.flush(60)
    store.close(5)
    from tracekit.sidecar.viewer.api import Viewer

    viewer = Viewer(db)

    def page(query: str) -> tuple[dict[str, Any], float]:
        began = time.perf_counter()
        reply = viewer.respond("/api/traces?" + query)
        assert reply is not None and reply[0] == 200
        return json.loads(reply[2]), time.perf_counter() - began

    first, t_first = page("limit=50")
    cursor, walked = first["next"], 50
    while cursor and walked < 9_950:
        body, t_deep = page("limit=50&after=" + quote(cursor))
        cursor, walked = body["next"], walked + len(body["traces"])
    assert body["traces"][-1]["trace_id"].endswith(f"{50:024x}")
    filtered, t_filtered = page("limit=50&status=fault&q=svc3&min_ms=100")
    assert [t["root"] for t in filtered["traces"]][:2] == ["svc3", "svc3"]
    print(f"10,000 traces: first page {t_first * 1000:.1f} ms, page 200 {t_deep * 1000:.1f} ms, "
          f"filtered {t_filtered * 1000:.1f} ms")
    assert max(t_first, t_deep) < 0.25 and t_filtered < 0.5  # a 2-core CI box shared with others


def test_traces_serve_shows_a_stored_database(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = LocalStore(db, retention=10, max_bytes=1 << 20)
    trace_id, docs, _ = shop_trace(1, time.time())
    for doc in docs:
        store.submit(json.dumps(doc).encode())
    assert store.flush(5)
    store.close(5)
    env = {**os.environ, "TRACEKIT_SIDECAR_LOCAL_DB": str(db)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit.cli", "traces", "serve", "--address", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("tracekit viewer: http://127.0.0.1:") and str(db) in line, line
        url = line.split()[2]
        status, page = get(url)
        assert status == 200 and b'src="/static/app.js"' in page
        status, body = get(url + "api/traces")
        assert [t["trace_id"] for t in json.loads(body)["traces"]] == [trace_id]
        assert json.loads(get(url + "api/sampling")[1]) == {"available": False, "rules": []}
        status, _ = get(url + "health")
        assert status == 404
        port = int(url.rsplit(":", 1)[1].strip("/"))
        taken = subprocess.run([sys.executable, "-m", "tracekit.cli", "traces", "serve", "--address",
                                f"127.0.0.1:{port}"], capture_output=True, text=True, env=env, timeout=30)
        assert taken.returncode == 2 and len(taken.stderr.splitlines()) == 1
        assert f"127.0.0.1:{port}" in taken.stderr and "--address" in taken.stderr
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    missing = subprocess.run([sys.executable, "-m", "tracekit.cli", "traces", "serve", "--db",
                              str(tmp_path / "none.db")], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "tracekit sidecar --local" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1 and not (tmp_path / "none.db").exists()


def test_static_assets_are_served_with_a_strict_content_security_policy(
    make_sidecar: Callable[..., Sidecar], tmp_path: Path
) -> None:
    sidecar = make_sidecar(local=True, local_db=tmp_path / "t.db")
    base = "http://{}:{}".format(*sidecar.admin.address())
    for path, kind in (("/", "text/html"), ("/static/app.js", "text/javascript"),
                       ("/static/style.css", "text/css")):
        with __import__("urllib.request").request.urlopen(base + path, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith(kind)
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    app = (ROOT / "src/tracekit/sidecar/viewer/static/app.js").read_text()
    assert "innerHTML" not in app and "insertAdjacentHTML" not in app and "eval(" not in app
    assert "http://" not in app.replace("http://www.w3.org/2000/svg", "") and "https://" not in app


def test_the_viewer_is_only_on_the_local_sidecar(make_sidecar: Callable[..., Sidecar], stub: Any) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    base = "http://{}:{}".format(*sidecar.admin.address())
    assert get(base + "/")[0] == 404 and get(base + "/api/status")[0] == 404


def test_list_traces_reads_the_summary_rows(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "t.db", retention=10, max_bytes=1 << 20)
    _, docs, _ = shop_trace(3, 1_000.0, fail=True)
    for doc in docs:
        store.submit(json.dumps(doc).encode())
    assert store.flush(5)
    (summary,) = list_traces(connect(tmp_path / "t.db"))
    assert (summary.root, summary.spans, summary.fault, summary.problem) == ("frontend", 7, True, True)
    store.close(5)


def test_demo_ends_with_the_viewer_command_for_what_it_stored() -> None:
    result = subprocess.run([sys.executable, "-m", "tracekit.cli", "demo", "--orders", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2].startswith("  tracekit traces serve --db ") and lines[-1] == "and open http://127.0.0.1:2020/"
    (summary,) = list_traces(connect(Path(lines[-2].split("--db ", 1)[1])))
    assert (summary.root, summary.spans) == ("demo-shop", 7)


def test_documents_from_the_wild_are_listed_and_shown(tmp_path: Path) -> None:
    """Nested values of the wrong type are left out of the summary and the view, never fatal."""
    db = tmp_path / "t.db"
    store = LocalStore(db, retention=10, max_bytes=1 << 20)
    trace_id = "1-6b0705a8-00000000000000000000a11d"
    wild = {"name": "wild", "id": "a11da11da11da11d", "trace_id": trace_id, "start_time": 100.0,
            "end_time": 100.5, "annotations": ["not", "a", "map"], "http": {"response": "none",
            "request": {"method": "GET", "url": "http://[broken/x"}},
            "subsegments": ["text", 7, {"name": "no times", "id": "b0b0b0b0b0b0b0b0", "fault": True,
                                        "start_time": "soon", "subsegments": {"not": "a list"}}]}
    store.submit(json.dumps(wild).encode())
    assert store.flush(5)
    store.close(5)
    (summary,) = list_traces(connect(db))
    assert (summary.root, summary.spans, summary.fault) == ("wild", 2, True)
    assert summary.duration_ms is None  # an entity without an end time is in progress
    from tracekit.sidecar.viewer.api import Viewer

    reply = Viewer(db).respond(f"/api/traces/{trace_id}")
    assert reply is not None and reply[0] == 200
    spans = json.loads(reply[2])["spans"]
    assert [(s["name"], s["start"]) for s in spans] == [("wild", 100.0), ("no times", None)]
