"""Tail sampling in the sidecar: deferred traces decided by the "Error responses" policy and the
head rules of sampling/, everything else forwarded unchanged (sampling/README.md)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind
from sidecar_helpers import HEADER, get, send_udp, wait_until

import tracekit
from tracekit._shared import stats as _stats
from tracekit.sampling import rules
from tracekit.sampling.deferred import DeferredSampler
from tracekit.sidecar.runtime import Sidecar
from tracekit.sidecar.store import connect, trace_documents
from tracekit.sidecar.tail_sampling import (
    DOCUMENT_OVERHEAD,
    POLICY_ANNOTATION,
    TRACE_OVERHEAD,
    TailSampler,
)
from tracekit.tracing import provider

SAMPLING = Path(__file__).resolve().parents[2] / "sampling"
RULES = rules.load([SAMPLING])
MARK = {"tracekit": {"tail": "deferred"}}
IDLE, MAX_WAIT = 5.0, 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect:
    """The inner sink: keeps what the tail sampler forwards."""

    buffered_bytes = queued = 0

    def __init__(self) -> None:
        self.docs: list[bytes] = []
        self.closed = False

    def submit(self, document: bytes) -> bool:
        self.docs.append(document)
        return True

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        self.closed = True

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self.docs]


@pytest.fixture
def clock() -> Clock:
    _stats.reset()
    return Clock()


@pytest.fixture
def inner() -> Collect:
    return Collect()


@pytest.fixture
def tail(clock: Clock, inner: Collect) -> TailSampler:
    return TailSampler(inner, RULES, idle=IDLE, max_wait=MAX_WAIT, clock=clock, rng=random.Random(7))


_ids = iter(range(1, 10**9))


def trace_id() -> str:
    return f"1-5f000000-{next(_ids):024x}"


def root(tid: str, *, status: int | None = 200, method: str = "GET", path: str = "/items",
         service: str = "shop", marked: bool = True, **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "name": service, "id": os.urandom(8).hex(), "trace_id": tid, "start_time": 1.0,
        "end_time": 2.0, "http": {"request": {"method": method, "url": f"http://shop.local{path}"}},
        **extra,
    }
    if status is not None:
        doc["http"]["response"] = {"status": status}
    if marked:
        doc["metadata"] = MARK
    return json.dumps(doc).encode()


def sub(tid: str, parent: str = "0123456789abcdef") -> bytes:
    return json.dumps({"name": "db", "id": os.urandom(8).hex(), "trace_id": tid, "type": "subsegment",
                       "parent_id": parent, "start_time": 1.0, "end_time": 1.5}).encode()


def decided(kind: str) -> int:
    return _stats.stats().get(f"sidecar.tail.decided.{kind}", 0)


def test_error_traces_are_all_kept_and_marked_by_the_policy(
    tail: TailSampler, inner: Collect, clock: Clock
) -> None:
    statuses = [404, 500, 503, 429, None]  # None: a fault without a status counts as 500
    for i in range(50):
        assert tail.submit(root(trace_id(), status=statuses[i % 5], fault=True))
    tail.sweep()
    assert inner.docs == []  # not quiet for IDLE seconds yet
    clock.now += IDLE
    tail.sweep()
    got = inner.parsed()
    assert len(got) == 50 == decided("kept_policy")
    assert all(d["annotations"][POLICY_ANNOTATION] == "Error responses" for d in got)
    assert all("metadata" not in d for d in got)  # the mark does not reach X-Ray
    assert _stats.stats()["sidecar.tail.kept_by.Error responses"] == 50
    assert tail.buffered_bytes == 0 and tail.queued == 0


def test_the_policy_reservoir_is_ten_per_second(clock: Clock, inner: Collect) -> None:
    policy = replace(RULES.tail[0], fixed_rate=0.0)  # only the reservoir keeps
    health_only = rules.RuleSet((replace(RULES.rules[0], url_path="*", http_method="*"),), (policy,))
    tail = TailSampler(inner, health_only, idle=IDLE, clock=clock, rng=random.Random(1))
    for _ in range(3):
        for _ in range(25):
            tail.submit(root(trace_id(), status=500))
        clock.now += IDLE
        tail.sweep()
        clock.now += 1
    assert len(inner.docs) == 30 == decided("kept_policy") and decided("dropped") == 45


def test_healthy_traces_follow_the_head_rules(tail: TailSampler, inner: Collect, clock: Clock) -> None:
    kinds = {
        "payment": dict(path="/api/payment/charge", method="POST"),
        "orders": dict(path="/orders/17", method="POST", service="order-service"),
        "default": dict(path="/items", method="GET"),
    }
    seconds, per_second = 30, 100
    sent: dict[str, str] = {}
    for _ in range(seconds):
        for kind, fields in kinds.items():
            for _ in range(per_second):
                tid = trace_id()
                sent[tid] = kind
                tail.submit(root(tid, status=200, **fields))
        tail.sweep()
        clock.now += 1
    tail.sweep(final=True)
    kept = {kind: 0 for kind in kinds}
    for doc in inner.parsed():
        kept[sent[doc["trace_id"]]] += 1
        assert "metadata" not in doc and "annotations" not in doc
    n = seconds * per_second
    assert kept["payment"] == n  # reservoir 5, then 100%
    for kind, reservoir, rate in (("orders", 2, 0.1), ("default", 1, 0.05)):
        rest = n - seconds * reservoir
        expected, sigma = seconds * reservoir + rest * rate, (rest * rate * (1 - rate)) ** 0.5
        assert abs(kept[kind] - expected) < 4 * sigma, (kind, kept[kind], expected)
    assert decided("kept_rule") == sum(kept.values()) and decided("dropped") == 3 * n - sum(kept.values())


def test_health_checks_are_never_kept(tail: TailSampler, inner: Collect, clock: Clock) -> None:
    for _ in range(10):
        for _ in range(50):
            tid = trace_id()
            tail.submit(sub(tid))
            tail.submit(root(tid, path="/health"))
        clock.now += 1
        tail.sweep()
    tail.sweep(final=True)
    assert inner.docs == [] and decided("dropped") == 500
    assert _stats.stats()["sidecar.tail.documents_discarded"] == 1000


def test_head_sampled_traces_pass_through_unchanged(
    tail: TailSampler, inner: Collect, clock: Clock
) -> None:
    tid = trace_id()
    early, segment, late = sub(tid), root(tid, marked=False, status=500), sub(tid)
    assert tail.submit(early) and inner.docs == []  # its root may yet be marked
    assert tail.submit(segment) and inner.docs == [early, segment]
    assert tail.submit(late) and inner.docs == [early, segment, late]
    orphan = sub(trace_id())  # a downstream document whose root never comes here
    tail.submit(orphan)
    clock.now += IDLE
    tail.sweep()
    assert inner.docs[-1] == orphan and tail.queued == 0
    assert decided("passthrough") == 2 and decided("kept_policy") == decided("dropped") == 0


def test_the_buffer_bound_holds_and_drops_are_counted(clock: Clock, inner: Collect) -> None:
    limit = 20_000
    tail = TailSampler(inner, RULES, idle=IDLE, max_bytes=limit, clock=clock, rng=random.Random(3))
    docs = [root(trace_id(), status=500) for _ in range(200)]
    accepted = 0
    for doc in docs:
        accepted += tail.submit(doc)
        assert tail.buffered_bytes <= limit
    assert accepted == tail.queued
    fitted = limit // (len(docs[0]) + DOCUMENT_OVERHEAD + TRACE_OVERHEAD)
    assert _stats.stats()["sidecar.tail.dropped.tail_buffer_full"] == 200 - tail.queued
    assert tail.queued == fitted
    unknown = sub(trace_id())
    tail.submit(unknown)  # not known to be deferred: forwarded rather than lost
    assert inner.docs == [unknown] and _stats.stats()["sidecar.tail.overflow_forwarded"] == 1
    clock.now += IDLE
    tail.sweep()
    assert tail.buffered_bytes == 0 and len(inner.docs) == 1 + decided("kept_policy")


def test_out_of_order_trace_is_decided_once_and_forwarded_whole(
    tail: TailSampler, inner: Collect, clock: Clock
) -> None:
    tid, dropped = trace_id(), trace_id()
    subs = [sub(tid) for _ in range(3)]
    for doc in (*subs, sub(dropped)):
        tail.submit(doc)
    clock.now += 2
    tail.submit(root(tid, status=502))
    tail.submit(root(dropped, path="/health"))
    clock.now += IDLE - 1
    tail.sweep()
    assert inner.docs == []  # quiet for IDLE since the root, not since the first document
    clock.now += 1
    tail.sweep()
    tail.sweep()
    assert inner.docs[:3] == subs and json.loads(inner.docs[3])["trace_id"] == tid
    assert len(inner.docs) == 4 and decided("kept_policy") == 1 and decided("dropped") == 1
    late, late_dropped = sub(tid), sub(dropped)
    tail.submit(late)
    tail.submit(late_dropped)
    assert inner.docs[-1] == late and len(inner.docs) == 5
    assert _stats.stats()["sidecar.tail.documents_after_decision"] == 2


def test_an_unfinished_root_waits_until_max_wait(
    tail: TailSampler, inner: Collect, clock: Clock
) -> None:
    tid = trace_id()
    tail.submit(root(tid, status=500, in_progress=True))
    clock.now += MAX_WAIT - 1
    tail.sweep()
    assert inner.docs == []
    clock.now += 1
    tail.sweep()
    assert len(inner.docs) == 1 and decided("kept_policy") == 1
    tail.submit(root(tid, status=500))  # the completed root, after the decision: same treatment
    completed = json.loads(inner.docs[-1])
    assert completed["annotations"] == {POLICY_ANNOTATION: "Error responses"}
    assert "metadata" not in completed and decided("kept_policy") == 1


def test_deferred_sampler_marks_roots_through_the_tracekit_emitter(
    make_sidecar: Callable[..., Sidecar], moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """App (OTEL_TRACES_SAMPLER=xray_deferred) -> UDP -> sidecar -> moto: errors kept, health not."""
    sidecar = make_sidecar(endpoint_url=moto, tail_sampling=True, sampling_dir=SAMPLING,
                           tail_idle=0.2, tail_max_wait=5.0)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "xray_deferred")
    tracekit.configure(service="shop", exporters=["xray"], daemon_udp=sidecar.udp.address())
    try:
        assert isinstance(provider._state["provider"].sampler.root, DeferredSampler)
        ids = {path: request(path, status) for path, status in
               (("/checkout", 503), ("/health", 200), ("/api/payment/pay", 200))}
        tracekit.force_flush()
    finally:
        provider.shutdown()
    wait_until(lambda: decided("kept_policy") + decided("kept_rule") + decided("dropped") == 3)
    assert sidecar.sink.flush(10)
    xray = boto3.client("xray", endpoint_url=moto, region_name="us-east-1")
    traces = {t["Id"]: t for t in xray.batch_get_traces(TraceIds=list(ids.values()))["Traces"]}
    assert set(traces) == {ids["/checkout"], ids["/api/payment/pay"]}
    error = json.loads(traces[ids["/checkout"]]["Segments"][0]["Document"])
    assert error["annotations"] == {POLICY_ANNOTATION: "Error responses"} and "metadata" not in error
    assert [s["name"] for s in error["subsegments"]] == ["query"]
    _, metrics = get(f"http://{sidecar.admin.address()[0]}:{sidecar.admin.address()[1]}/metrics")
    assert b'tracekit_sidecar_tail_decided_total{decision="kept_policy"} 1.0' in metrics
    assert b'tracekit_sidecar_tail_kept_by_total{rule="High-priority transactions"} 1.0' in metrics


def request(path: str, status: int) -> str:
    attributes = {"http.request.method": "GET", "url.full": f"http://shop.local{path}",
                  "http.response.status_code": status}
    with tracekit.span(f"GET {path}", kind=SpanKind.SERVER, attributes=attributes):
        with tracekit.span("query"):
            pass
        tid = tracekit.current_trace_id()
    assert tid
    return tid


@pytest.fixture
def sidecar_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], tuple[str, int], Path]]:
    def free(kind: socket.SocketKind) -> int:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    udp, admin, db = free(socket.SOCK_DGRAM), free(socket.SOCK_STREAM), tmp_path / "traces.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit.cli", "sidecar", "--local", "--tail-sampling",
         "--sampling-dir", str(SAMPLING), "--tail-idle", "60", "--local-db", str(db),
         "--udp-address", f"127.0.0.1:{udp}", "--tcp-address", f"127.0.0.1:{free(socket.SOCK_STREAM)}",
         "--admin-address", f"127.0.0.1:{admin}", "--otlp-address", "off", "--emf-address", "off"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    health = f"http://127.0.0.1:{admin}/health"
    wait_until(lambda: get(health)[0] == 200 or proc.poll() is not None)
    yield proc, ("127.0.0.1", udp), db
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_sigterm_decides_buffered_traces_and_flushes(
    sidecar_process: tuple[subprocess.Popen[str], tuple[str, int], Path],
) -> None:
    proc, udp, db = sidecar_process
    error, health, passed = trace_id(), trace_id(), trace_id()
    datagrams = [sub(error), root(error, status=500), root(health, path="/health"),
                 root(passed, path="/health", marked=False)]
    send_udp(udp, *(HEADER + b"\n" + d for d in datagrams))
    wait_until(lambda: db.exists() and trace_documents(connect(db), passed))  # forwarded at once
    assert not trace_documents(connect(db), error)  # buffered: --tail-idle is 60 s
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    stored = trace_documents(connect(db), error)
    assert len(stored) == 2 and not trace_documents(connect(db), health)
    summary = next(json.loads(line) for line in err.splitlines() if "sidecar stopped" in line)
    assert summary["received"] == 4 and summary["dropped"] == {}


def test_settings_from_env_and_yaml_and_clear_errors(tmp_path: Path) -> None:
    import argparse

    from tracekit._shared.settings import ConfigError
    from tracekit.sidecar.settings import Settings, add_arguments, resolve

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = tmp_path / "sidecar.yaml"
    config.write_text("tail_sampling: true\ntail_idle: 2\n")
    got = resolve(parser.parse_args(["--config", str(config)]), {"TRACEKIT_SIDECAR_TAIL_BUFFER": "4"})
    assert (got.tail_sampling, got.tail_idle, got.tail_max_wait, got.tail_buffer) == (True, 2.0, 30.0, 4)
    with pytest.raises(ConfigError, match=r"--sampling-dir.*a directory of rule files"):
        Sidecar(replace(Settings(local=True, local_db=tmp_path / "db"), tail_sampling=True,
                        sampling_dir=tmp_path / "missing"))
    (tmp_path / "rules.yaml").write_text("rules:\n  - RuleName: x\n    FixedRate: 2\n")
    with pytest.raises(ConfigError, match=r"rules.yaml:\d+: FixedRate"):
        Sidecar(replace(Settings(local=True, local_db=tmp_path / "db"), tail_sampling=True,
                        sampling_dir=tmp_path))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
FIELDS = st.fixed_dictionaries({}, optional={
    "http": JSON | st.fixed_dictionaries({"request": st.fixed_dictionaries(
        {}, optional={"url": st.text(max_size=30), "method": JSON}), "response": JSON}),
    "name": JSON, "origin": JSON, "fault": JSON, "in_progress": JSON, "parent_id": JSON,
    "type": st.sampled_from(["subsegment", "segment"]) | JSON, "id": JSON,
})


@settings(max_examples=150, deadline=None)
@given(docs=st.lists(st.tuples(st.integers(0, 3), st.booleans(), FIELDS), max_size=12))
def test_any_document_is_decided_or_forwarded_never_stuck(
    docs: list[tuple[int, bool, dict[str, Any]]],
) -> None:
    inner, clock = Collect(), Clock()
    tail = TailSampler(inner, RULES, clock=clock, rng=random.Random(0))
    for n, marked, fields in docs:
        doc = {**fields, "trace_id": f"1-5f000000-{n:024x}", **({"metadata": MARK} if marked else {})}
        tail.submit(json.dumps(doc).encode())
        clock.now += 0.5
    tail.submit(b"[1]")
    tail.sweep(final=True)
    assert tail.queued == 0 and tail.buffered_bytes == 0
    assert not any(carries_the_mark(d) for d in inner.docs)


def carries_the_mark(raw: bytes) -> bool:
    """The mark itself, not the word: generated fields may well say "deferred" (they did)."""
    doc = json.loads(raw)
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    return isinstance(metadata, dict) and "tail" in (metadata.get("tracekit") or {})


def test_faults_in_a_decision_or_the_inner_sink_lose_nothing_else(
    clock: Clock, inner: Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    tail = TailSampler(inner, RULES, idle=IDLE, clock=clock, sweep_interval=0.01)
    broken = trace_id()
    tail.submit(root(broken, status=500))
    monkeypatch.setattr(tail._tail, "keep", lambda *a, **k: 1 / 0)
    clock.now += IDLE
    tail.sweep()  # the decision fails: forwarded undecided (unmarked), counted, not stuck
    assert [json.loads(d)["trace_id"] for d in inner.docs] == [broken] and tail.queued == 0
    assert "metadata" not in json.loads(inner.docs[0])
    assert _stats.stats()["errors.sidecar.tail.decision"] == 1
    monkeypatch.undo()
    submit, calls = inner.submit, []

    def flaky(document: bytes) -> bool:
        calls.append(document)
        if len(calls) == 1:
            raise OSError("inner sink broke once")
        return submit(document)

    monkeypatch.setattr(inner, "submit", flaky)
    tail.start()  # the sweeper thread, on the injected clock
    try:
        for status in (500, 502):
            tail.submit(root(trace_id(), status=status))
        clock.now += IDLE
        wait_until(lambda: tail.queued == 0)
    finally:
        tail.close(1.0)
    assert len(calls) == 2 and len(inner.docs) == 2 and inner.closed  # one lost to the fault
    assert _stats.stats()["sidecar.tail.dropped.forward_error"] == 1
    assert _stats.stats()["errors.sidecar.tail.forward"] == 1
