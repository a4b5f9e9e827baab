"""Hostile clients and secrets: slow clients never starve /health, resets never print tracebacks,
credentials in URLs are never printed, and every refused request or datagram is counted."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from sidecar_helpers import BASE, HEADER, XRayStub, document, get, post, send_udp, url, wait_until

from tracekit._shared import stats as _stats
from tracekit.sidecar import ingest
from tracekit.sidecar.runtime import Sidecar


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Slowloris:
    """Clients that each send one header line every ``every`` seconds, reconnecting when cut off."""

    def __init__(self, targets: list[tuple[str, int]], per_target: int, every: float) -> None:
        self._targets = [t for t in targets for _ in range(per_target)]
        self._every = every
        self._stop = threading.Event()
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _connect(self, target: tuple[str, int]) -> socket.socket | None:
        try:
            sock = socket.create_connection(target, timeout=1)
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\n")
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        socks = [self._connect(t) for t in self._targets]
        while not self._stop.wait(self._every):
            for i, sock in enumerate(socks):
                try:
                    assert sock is not None
                    sock.sendall(b"X-Slow: 1\r\n")
                except (OSError, AssertionError):
                    if sock is not None:
                        sock.close()
                    self.reconnects += 1
                    socks[i] = self._connect(self._targets[i])
        for sock in socks:
            if sock is not None:
                sock.close()


@pytest.fixture
def full_sidecar(stub: XRayStub) -> Iterator[Sidecar]:
    """A sidecar with every port: UDP, proxy, admin, OTLP and EMF (to a local log sink)."""
    _stats.reset()
    settings = replace(BASE, endpoint_url=stub.url, otlp_address=("127.0.0.1", 0),
                       emf_address=("127.0.0.1", 0), local=False)  # fmt: skip
    sidecar = Sidecar(settings)
    for listener in ingest.listeners(settings, sidecar.sink, "us-east-1"):
        sidecar.add(listener)
    sidecar.start()
    yield sidecar
    sidecar.shutdown()


def test_health_answers_within_1s_while_every_port_is_under_slowloris(full_sidecar: Sidecar) -> None:
    ports = {lst.name: lst.address() for lst in full_sidecar.listeners if lst.name != "udp"}
    admin = full_sidecar.admin.address()
    wait_until(lambda: get(url(admin, "/health"))[0] == 200)
    with Slowloris([*ports.values(), admin], per_target=40, every=1.0):
        time.sleep(2.0)  # every slot of every port taken by now
        slowest = 0.0
        end = time.monotonic() + 7.0  # past the header deadline: attackers cut off and back
        while time.monotonic() < end:
            began = time.monotonic()
            status, _ = get(url(admin, "/health"))
            slowest = max(slowest, time.monotonic() - began)
            assert status == 200
            time.sleep(0.2)
        began = time.monotonic()  # the attacked ports still serve their real clients
        otlp = urllib.request.Request(url(ports["otlp"], "/v1/traces"), data=b"",
                                      headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        assert urllib.request.urlopen(otlp, timeout=5).status == 200
        assert post(url(ports["tcp"], "/GetSamplingRules"))[0] == 404  # the stub's answer, relayed
        served = time.monotonic() - began
    assert slowest < 1.0 and served < 2.0
    counts = _stats.stats()
    assert counts.get("sidecar.admin.rejected.evicted", 0) > 0
    assert counts.get("sidecar.proxy.rejected.timeout", 0) + counts.get("sidecar.proxy.rejected.evicted", 0)


def test_folded_header_never_reaches_the_signed_upstream(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    with socket.create_connection(sidecar.proxy.address(), timeout=5) as conn:
        conn.sendall(b"POST /SamplingTargets HTTP/1.1\r\nContent-Type: application/json\r\n"
                     b" X-Amz-Target: AWSXRay.DeleteGroup\r\nContent-Length: 2\r\n\r\n{}")  # fmt: skip
        reply = conn.recv(1000)
    assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400")
    assert "/SamplingTargets" not in stub.headers
    assert _stats.stats()["sidecar.proxy.rejected.folded_header"] == 1


def test_udp_counts_empty_datagrams_and_refuses_version_true(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    bad = (b"", b'{"format":"json","version":true}\n' + document(1),
           b'{"format":"json","version":1.0}\n' + document(2))  # fmt: skip
    send_udp(sidecar.udp.address(), *bad, HEADER + b"\n" + document(3))
    wait_until(lambda: _stats.stats().get("sidecar.upstream.sent") == 1)
    counts = _stats.stats()
    assert counts["sidecar.udp.rejected.empty_datagram"] == 1
    assert counts["sidecar.udp.rejected.invalid_header"] == 2
    sidecar.shutdown()
    assert _stats.stats()["sidecar.udp.rejected.empty_datagram"] == 1  # stop()'s wake-up is not one


def test_otlp_411_and_wrong_paths_are_counted(full_sidecar: Sidecar) -> None:
    otlp = next(lst for lst in full_sidecar.listeners if lst.name == "otlp").address()
    with socket.create_connection(otlp, timeout=5) as conn:
        conn.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n\r\n")
        assert b" 411 " in conn.recv(1000)
    req = urllib.request.Request(url(otlp, "/v1/logs"), data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(req, timeout=5)
    counts = _stats.stats()
    assert counts["sidecar.otlp.requests.received"] == 2
    rejected = {k: v for k, v in counts.items() if k.startswith("sidecar.otlp.requests.rejected.")}
    assert rejected == {"sidecar.otlp.requests.rejected.length_required": 1,
                        "sidecar.otlp.requests.rejected.not_found": 1}  # fmt: skip


def _reset(address: tuple[str, int], data: bytes) -> None:
    """Send ``data`` then reset the connection (RST, not FIN)."""
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(data)
    time.sleep(0.05)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_process_logs_only_json_and_never_a_secret_or_traceback(stub: XRayStub) -> None:
    """Resets on the proxy, OTLP and admin ports; credentials in --endpoint-url and --otlp-forward."""
    ports = {name: _free_port() for name in ("tcp", "admin", "otlp", "emf")}
    endpoint = stub.url.replace("http://", "http://USER:SECRET1@")
    forward = f"http://fwduser:SECRET2@127.0.0.1:{_free_port()}/v1/traces?token=SECRET3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit.cli", "sidecar", "--region", "us-east-1",
         "--endpoint-url", endpoint, "--udp-address", "127.0.0.1:0",
         "--tcp-address", f"127.0.0.1:{ports['tcp']}", "--admin-address", f"127.0.0.1:{ports['admin']}",
         "--otlp-address", f"127.0.0.1:{ports['otlp']}", "--otlp-forward", forward,
         "--emf-address", f"127.0.0.1:{ports['emf']}", "--shutdown-timeout", "1"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        health = f"http://127.0.0.1:{ports['admin']}/health"
        wait_until(lambda: get(health)[0] == 200)
        partial = b"POST /v1/traces HTTP/1.1\r\nContent-Length: 99\r\n\r\nab"
        for name in ("tcp", "otlp", "admin"):
            for _ in range(3):
                _reset(("127.0.0.1", ports[name]), partial)
        req = urllib.request.Request(f"http://127.0.0.1:{ports['otlp']}/v1/traces", data=b"",
                                     headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        urllib.request.urlopen(req, timeout=5).read()  # forwarded to a closed port: warnings
        time.sleep(1.0)
        body = get(health)[1].decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines = err.splitlines()
    assert lines and all(json.loads(line)["message"] for line in lines), err
    assert not any("Traceback" in line for line in lines), err
    for secret in ("SECRET1", "SECRET2", "SECRET3", "fwduser"):
        assert secret not in err and secret not in body
    started = next(json.loads(line) for line in lines if "sidecar started" in line)
    assert started["endpoint"].startswith("http://[REDACTED]@127.0.0.1:")
    assert any("OTLP forward" in line for line in lines)  # the warning is there, masked
    summary = next(json.loads(line) for line in lines if "sidecar stopped" in line)
    assert summary["received"] == 0


def test_every_port_is_counted_in_the_metrics_from_the_start(full_sidecar: Sidecar) -> None:
    send_udp(full_sidecar.udp.address(), b"")
    metrics = url(full_sidecar.admin.address(), "/metrics")
    wait_until(lambda: b'reason="empty_datagram"} 1.0' in get(metrics)[1])
    text = get(metrics)[1].decode()
    assert 'tracekit_sidecar_emf_upstream_dropped_total{reason="retries_exhausted"} 0.0' in text
    assert "tracekit_sidecar_otlp_requests_received_total 0.0" in text


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_130_emf_connections_without_newline_are_closed_and_memory_stays_bounded(stub: XRayStub) -> None:
    ports = {name: _free_port() for name in ("admin", "emf")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit.cli", "sidecar", "--region", "us-east-1",
         "--endpoint-url", stub.url, "--udp-address", "127.0.0.1:0", "--tcp-address", "127.0.0.1:0",
         "--admin-address", f"127.0.0.1:{ports['admin']}", "--otlp-address", "off",
         "--emf-address", f"127.0.0.1:{ports['emf']}", "--logs-endpoint-url", stub.url,
         "--shutdown-timeout", "1"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{ports['admin']}/health")[0] == 200)
        idle = _rss_mb(proc.pid)
        closed: list[bool] = []

        def flood() -> None:
            try:
                with socket.create_connection(("127.0.0.1", ports["emf"]), timeout=10) as conn:
                    conn.sendall(b"{" + b"x" * 1_048_576)
                    closed.append(conn.recv(10) == b"")
            except OSError:  # reset while sending: closed too
                closed.append(True)

        threads = [threading.Thread(target=flood) for _ in range(130)]
        for thread in threads:
            thread.start()
        peak = idle
        while any(t.is_alive() for t in threads):
            peak = max(peak, _rss_mb(proc.pid))
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert closed == [True] * 130
    assert peak - idle < 48, (idle, peak)  # 16 MB of partial lines, plus threads and buffers
    summary = next(json.loads(line) for line in err.splitlines() if "sidecar stopped" in line)
    fates = (*summary["rejected"].items(), *summary["dropped"].items())
    lost = sum(v for k, v in fates if k.startswith("emf."))
    assert summary["emf_lines_received"] == lost > 0, summary


class _Lines:
    """Where the receiver's valid lines go in this test (the receiver is what is tested)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def put(self, message: str, timestamp_ms: int | None = None) -> bool:
        self.lines.append(message)
        return True

    def close(self, timeout: float) -> None:
        pass


def test_emf_partial_lines_share_one_byte_budget_and_a_line_deadline() -> None:
    from tracekit.sidecar.emf_receiver import EmfReceiver

    _stats.reset()
    rx = EmfReceiver("127.0.0.1", 0, shipper=_Lines(), max_buffered=512 * 1024, line_timeout=0.5)
    rx.start()
    conns = [socket.create_connection(rx.address(), timeout=5) for _ in range(10)]
    try:
        for conn in conns:  # 10 x 200 KB of one unfinished line: the budget holds 2 of them
            with contextlib.suppress(OSError):
                conn.sendall(b"{" + b"x" * 200_000)
        wait_until(lambda: _stats.stats().get("sidecar.emf.dropped.buffer_limit", 0) >= 7)
        assert rx.budget.used <= 512 * 1024
        wait_until(lambda: _stats.stats().get("sidecar.emf.dropped.line_timeout", 0) >= 1)
        wait_until(lambda: rx.budget.used == 0)
        counts = _stats.stats()
        dropped = counts["sidecar.emf.dropped.buffer_limit"] + counts["sidecar.emf.dropped.line_timeout"]
        assert counts["sidecar.emf.received"] == dropped == 10
    finally:
        for conn in conns:
            conn.close()
        rx.stop()


def _emf_line(i: int) -> bytes:
    metrics = [{"Namespace": "Shop", "Dimensions": [["Route"]], "Metrics": [{"Name": "Latency"}]}]
    aws = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": metrics}
    doc = {"_aws": aws, "Route": "/", "Latency": i}
    return json.dumps(doc).encode() + b"\n"


def _closed_by_peer(conn: socket.socket) -> bool:
    conn.settimeout(0.2)
    try:
        return conn.recv(10) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def test_at_the_connection_cap_a_new_emf_client_evicts_the_longest_silent_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tracekit.sidecar.emf_receiver import MAX_CONNECTIONS, EmfReceiver

    _stats.reset()
    lines = _Lines()
    rx = EmfReceiver("127.0.0.1", 0, shipper=lines)
    rx.start()
    partial = socket.create_connection(rx.address(), timeout=5)  # the oldest, in the middle of a line
    partial.sendall(b'{"_aws": ')
    wait_until(lambda: rx.budget.used > 0)
    idle = [socket.create_connection(rx.address(), timeout=5) for _ in range(MAX_CONNECTIONS - 1)]
    try:
        with socket.create_connection(rx.address(), timeout=5) as late:
            late.sendall(b"".join(_emf_line(i) for i in range(3)))
            wait_until(lambda: len(lines.lines) == 3)
        assert [json.loads(line)["Latency"] for line in lines.lines] == [0, 1, 2]
        assert _closed_by_peer(idle[0])  # silent longest: evicted
        assert not _closed_by_peer(idle[1]) and not _closed_by_peer(partial)
        counts = _stats.stats()
        assert counts["sidecar.emf.connections.evicted"] == 1
        assert "sidecar.emf.rejected.too_many_connections" not in counts
        warned = [r.getMessage() for r in caplog.records if "connection cap" in r.getMessage()]
        assert len(warned) == 1 and "silent" in warned[0], warned
    finally:
        for conn in (partial, *idle):
            conn.close()
        rx.stop()


def test_with_every_emf_connection_mid_line_the_oldest_line_is_evicted_and_counted() -> None:
    from tracekit.sidecar.emf_receiver import EmfReceiver

    _stats.reset()
    lines = _Lines()
    rx = EmfReceiver("127.0.0.1", 0, shipper=lines, max_connections=4)
    rx.start()
    conns = []
    try:
        for i in range(1, 5):
            conns.append(socket.create_connection(rx.address(), timeout=5))
            conns[-1].sendall(_emf_line(i)[:20])
            wait_until(lambda held=i * 65_536: rx.budget.used == held)  # its line started
        with socket.create_connection(rx.address(), timeout=5) as late:
            late.sendall(_emf_line(9))
            wait_until(lambda: len(lines.lines) == 1)
        wait_until(lambda: _stats.stats().get("sidecar.emf.dropped.evicted") == 1)
        assert _closed_by_peer(conns[0]) and not _closed_by_peer(conns[1])
        counts = _stats.stats()
        assert counts["sidecar.emf.connections.evicted"] == 1
        assert counts["sidecar.emf.received"] == counts["sidecar.emf.accepted"] + 1 == 2
    finally:
        for conn in conns:
            conn.close()
        rx.stop()
