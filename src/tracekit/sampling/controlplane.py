"""A local X-Ray sampling control plane: the sampling half of the X-Ray REST-JSON API on SQLite.

It serves exactly what botocore's ``xray`` model expects (paths, shapes, epoch-second timestamps,
error codes in ``x-amzn-ErrorType``), so boto3 with ``endpoint_url``, the aws-xray-sdk sampler and
tracekit's own sampler work against it unchanged. Requests are not authenticated: it binds to
127.0.0.1 and stands in for the X-Ray daemon's (already signing) TCP proxy.

Reservoir accounting: each rule's ReservoirSize per second is split between the clients that
reported in the last three intervals, in proportion to their request rates, in whole traces by
largest remainder (the parts add up to the size: two equal clients of a reservoir of 1 get 1 and
0, not 0 each). A boost (SamplingRateBoost) starts when a client reports
anomalies, lasts ``BOOST_SECONDS`` at MaxRate, and at most one starts per cooldown window.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tracekit.sampling import validate
from tracekit.sampling.rules import DEFAULT_RULE, Rule, RuleSet
from tracekit.sampling.validate import DEFAULT_RULE_NAME

INTERVAL = 10
"""Seconds between two GetSamplingTargets calls of a client (the ``Interval`` we hand out)."""
QUOTA_TTL = 15
"""Seconds a reservoir quota stays valid: one interval plus room for the clients' jitter."""
ACTIVE_CLIENT_WINDOW = 3 * INTERVAL
BOOST_SECONDS = 60
SUMMARY_WINDOW = 60
MAX_STATS_DOCS = 25
MAX_BODY = 1 << 20
MAX_TAG_LIST = 200
"""The API model's TagList limit; beyond 50 on one resource TagResource says TooManyTags."""

Response = tuple[int, dict[str, str], bytes]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (name TEXT PRIMARY KEY, arn TEXT UNIQUE, body TEXT NOT NULL,
                                  created REAL NOT NULL, modified REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tags (arn TEXT, key TEXT, value TEXT, PRIMARY KEY (arn, key));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL);
CREATE TABLE IF NOT EXISTS clients (rule TEXT, client TEXT, rate REAL, seen REAL,
                                    PRIMARY KEY (rule, client));
CREATE TABLE IF NOT EXISTS stats (rule TEXT, ts REAL, requests INT, sampled INT, borrowed INT);
CREATE TABLE IF NOT EXISTS boosts (rule TEXT PRIMARY KEY, rate REAL, until REAL, started REAL);
"""


class ApiError(Exception):
    """An X-Ray error response: its code, HTTP status and message."""

    def __init__(self, code: str, message: str, status: int = 400, **extra: str) -> None:
        super().__init__(message)
        self.code, self.status, self.extra = code, status, extra

    @classmethod
    def invalid(cls, issues: list[validate.Issue]) -> ApiError:
        fld, problem, accepted = issues[0]
        return cls("InvalidRequestException", f"{fld}: {problem} (accepted: {accepted})")


class ControlPlane:
    """The control plane: call :meth:`handle` directly, or :meth:`start` its HTTP server."""

    def __init__(
        self,
        db_path: str = ":memory:",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        page_size: int = 10,
        max_rules: int = validate.MAX_RULES,
        region: str = "us-east-1",
        account: str = "000000000000",
    ) -> None:
        self._db = sqlite3.connect(db_path, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._clock = clock
        self._page_size = page_size
        self._max_rules = max_rules
        self._arn_prefix = f"arn:aws:xray:{region}:{account}:sampling-rule/"
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._throttled: dict[str, int] = {}
        self._routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/GetSamplingRules": self._get_rules,
            "/CreateSamplingRule": self._create_rule,
            "/UpdateSamplingRule": self._update_rule,
            "/DeleteSamplingRule": self._delete_rule,
            "/SamplingTargets": self._get_targets,
            "/SamplingStatisticSummaries": self._get_summaries,
            "/TagResource": self._tag_resource,
            "/UntagResource": self._untag_resource,
            "/ListTagsForResource": self._list_tags,
        }
        with self._lock, self._db:
            if self._find(DEFAULT_RULE_NAME) is None:
                self._insert(DEFAULT_RULE.to_api(), [])

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Serve HTTP on ``host:port`` (port 0 = a free one) in a daemon thread."""
        plane = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each keep-alive answer waits ~40 ms

            def do_POST(self) -> None:
                self._serve()

            def do_GET(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.close_connection = True
                    status, headers, payload = plane.error_response(ApiError(
                        "InvalidRequestException", f"body of {length} bytes (accepted: at most "
                        f"{MAX_BODY})", 413))
                else:
                    body = self.rfile.read(length) if length else b""
                    status, headers, payload = plane.handle(
                        self.command, self.path, dict(self.headers.items()), body
                    )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: request lines could carry account details."""

        self._server = ThreadingHTTPServer(self._address, Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="tracekit-xray-sampling", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop the HTTP server (if started) and close the database."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            self._db.close()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("ControlPlane.start() was not called")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- seeding and fault injection --------------------------------------------------------

    def load_rules(self, rules: Iterable[Rule]) -> None:
        """Create or replace rules (with their tags); ``Default`` keeps its matchers."""
        with self._lock, self._db:
            for rule in rules:
                tags = [{"Key": k, "Value": v} for k, v in rule.tags.items()]
                if self._find(rule.name) is None:
                    self._insert(rule.to_api(), tags)
                else:
                    self._replace(rule.name, rule.to_api())
                    self._set_tags(self._arn(rule.name), tags)

    def load_dir(self, path: str | Path) -> RuleSet:
        """Seed from a directory (or file) of tracekit rule files, e.g. ``sampling/``."""
        from tracekit.sampling import rules as rule_files

        ruleset = rule_files.load([path])
        self.load_rules(ruleset.rules)
        return ruleset

    def overview(self) -> dict[str, Any]:
        """Every rule with its statistics of the last ``SUMMARY_WINDOW`` s and its running boost
        (for the local viewer); the API needs three calls and pages for the same."""
        with self._lock:
            now = self._clock()
            records = sorted((self._record(n) for (n,) in self._db.execute("SELECT name FROM rules")),
                             key=_record_order)
            counts = {r: (n, s, b) for r, n, s, b in self._db.execute(
                "SELECT rule, SUM(requests), SUM(sampled), SUM(borrowed) FROM stats WHERE ts >= ? "
                "GROUP BY rule", (now - SUMMARY_WINDOW,))}
            boosts = {r: (rate, until) for r, rate, until in self._db.execute(
                "SELECT rule, rate, until FROM boosts WHERE until > ?", (now,))}
        rules = []
        for record in records:
            name = record["SamplingRule"]["RuleName"]
            requests, sampled, borrowed = counts.get(name, (0, 0, 0))
            rate, until = boosts.get(name, (None, None))
            rules.append({**record, "RequestCount": requests, "SampledCount": sampled,
                          "BorrowCount": borrowed, "BoostRate": rate, "BoostUntil": until})
        return {"window_seconds": SUMMARY_WINDOW, "rules": rules}

    def throttle_next(self, operation_path: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``/Operation`` with ThrottledException (429)."""
        with self._lock:
            self._throttled[operation_path] = times

    # -- the API ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one HTTP request; framework-free so any server (e.g. the sidecar) can use it."""
        route = self._routes.get(path.split("?", 1)[0].rstrip("/") or "/")
        try:
            if route is None or method.upper() != "POST":
                raise ApiError("UnknownOperationException", f"no operation at {method} {path}", 404)
            result = route(self._parse(body))
            return 200, self._headers(), json.dumps(result).encode()
        except ApiError as err:
            return self.error_response(err)

    def error_response(self, err: ApiError) -> Response:
        """The REST-JSON error botocore parses: code in x-amzn-ErrorType and ``__type``."""
        payload = {"__type": err.code, "Message": str(err), **err.extra}
        headers = {**self._headers(), "x-amzn-ErrorType": f"{err.code}:"}
        return err.status, headers, json.dumps(payload).encode()

    @staticmethod
    def _headers() -> dict[str, str]:
        return {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}

    def _parse(self, body: bytes) -> dict[str, Any]:
        try:
            parsed = json.loads(body or b"{}")
        except (ValueError, RecursionError) as exc:
            raise ApiError("SerializationException", f"body is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ApiError("SerializationException", "body is not a JSON object")
        return parsed

    def _check_throttle(self, path: str) -> None:
        left = self._throttled.get(path, 0)
        if left > 0:
            self._throttled[path] = left - 1
            raise ApiError("ThrottledException", "Rate exceeded", 429)

    def _get_rules(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._check_throttle("/GetSamplingRules")
            rows = self._db.execute("SELECT name FROM rules").fetchall()
            records = sorted((self._record(n) for (n,) in rows), key=_record_order)
            page, token = self._page(records, body.get("NextToken"))
        return {"SamplingRuleRecords": page, **({"NextToken": token} if token else {})}

    def _create_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        rule = body.get("SamplingRule")
        if not isinstance(rule, dict):
            raise ApiError("InvalidRequestException", "SamplingRule is required")
        issues = validate.check_rule(rule) + validate.check_tags(body.get("Tags", []))
        if issues:
            raise ApiError.invalid(issues)
        with self._lock, self._db:
            self._check_throttle("/CreateSamplingRule")
            rule = {k: v for k, v in rule.items() if k != "RuleARN"}
            if self._find(rule["RuleName"]) is not None:
                raise ApiError("InvalidRequestException",
                               f"a sampling rule named {rule['RuleName']!r} already exists")
            (count,) = self._db.execute("SELECT COUNT(*) FROM rules").fetchone()
            if count - 1 >= self._max_rules:
                raise ApiError("RuleLimitExceededException",
                               f"an account has at most {self._max_rules} sampling rules")
            self._insert(rule, body.get("Tags", []))
            return {"SamplingRuleRecord": self._record(rule["RuleName"])}

    def _update_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        update = body.get("SamplingRuleUpdate")
        if not isinstance(update, dict):
            raise ApiError("InvalidRequestException", "SamplingRuleUpdate is required")
        changes = {k: v for k, v in update.items() if k not in ("RuleName", "RuleARN")}
        issues = validate.check_rule(changes, partial=True)
        if "Version" in changes:
            issues.append(("Version", "cannot be updated", "the fields of SamplingRuleUpdate"))
        if issues:
            raise ApiError.invalid(issues)
        with self._lock, self._db:
            self._check_throttle("/UpdateSamplingRule")
            name = self._resolve(update)
            if name == DEFAULT_RULE_NAME:
                bad = [k for k in changes if k not in validate.DEFAULT_MUTABLE]
                if bad:
                    raise ApiError("InvalidRequestException",
                                   f"{bad[0]}: cannot change on the Default rule (accepted: "
                                   + ", ".join(validate.DEFAULT_MUTABLE) + ")")
            current = json.loads(self._find(name) or "{}")
            self._replace(name, {**current, **changes})
            return {"SamplingRuleRecord": self._record(name)}

    def _delete_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock, self._db:
            self._check_throttle("/DeleteSamplingRule")
            name = self._resolve(body)
            if name == DEFAULT_RULE_NAME:
                raise ApiError("InvalidRequestException", "the Default rule cannot be deleted")
            record = self._record(name)
            arn = self._arn(name)
            for table, column, key in (("rules", "name", name), ("tags", "arn", arn),
                                       ("clients", "rule", name), ("boosts", "rule", name)):
                self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))
            self._touch()
            return {"SamplingRuleRecord": record}

    def _get_targets(self, body: dict[str, Any]) -> dict[str, Any]:
        docs = _doc_list(body, "SamplingStatisticsDocuments", required=True)
        boosts = _doc_list(body, "SamplingBoostStatisticsDocuments", required=False)
        for doc in docs:
            _check_stats_doc(doc)
        for doc in boosts:
            _check_boost_doc(doc)
        with self._lock, self._db:
            self._check_throttle("/SamplingTargets")
            now = self._clock()
            reported: dict[str, None] = {}
            unprocessed = self._each_known(docs, self._record_stats, now, reported)
            unprocessed_boost = self._each_known(boosts, self._consider_boost, now, reported)
            targets = [self._target(name, docs, now) for name in reported]
            return {
                "SamplingTargetDocuments": targets,
                "LastRuleModification": self._last_modification(),
                "UnprocessedStatistics": unprocessed,
                "UnprocessedBoostStatistics": unprocessed_boost,
            }

    def _each_known(self, docs: list[dict[str, Any]],
                    apply: Callable[[Mapping[str, Any], float], None], now: float,
                    reported: dict[str, None]) -> list[dict[str, str]]:
        """Apply each document of an existing rule (noting the rule in ``reported``, ordered);
        return the UnprocessedStatistics entries of the others."""
        unprocessed: list[dict[str, str]] = []
        for doc in docs:
            if self._find(doc["RuleName"]) is None:
                unprocessed.append(_unknown_rule(doc["RuleName"]))
                continue
            apply(doc, now)
            reported[doc["RuleName"]] = None
        return unprocessed

    def _get_summaries(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._check_throttle("/SamplingStatisticSummaries")
            since = self._clock() - SUMMARY_WINDOW
            rows = self._db.execute(
                "SELECT rule, MIN(ts), SUM(requests), SUM(borrowed), SUM(sampled) FROM stats "
                "WHERE ts >= ? GROUP BY rule ORDER BY rule", (since,)).fetchall()
        summaries = [
            {"RuleName": r, "Timestamp": ts, "RequestCount": n, "BorrowCount": b, "SampledCount": s}
            for r, ts, n, b, s in rows
        ]
        page, token = self._page(summaries, body.get("NextToken"))
        return {"SamplingStatisticSummaries": page, **({"NextToken": token} if token else {})}

    def _tag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        tags = body.get("Tags")
        issues = validate.check_tags(tags, limit=MAX_TAG_LIST)
        if issues:
            raise ApiError.invalid(issues)
        with self._lock, self._db:
            arn = self._known_arn(body)
            current = self._tags(arn)
            current.update({t["Key"]: t["Value"] for t in tags or []})
            if len(current) > validate.MAX_TAGS_PER_RESOURCE:
                raise ApiError("TooManyTagsException", "a resource has at most "
                               f"{validate.MAX_TAGS_PER_RESOURCE} tags", ResourceName=arn)
            self._set_tags(arn, [{"Key": k, "Value": v} for k, v in current.items()])
        return {}

    def _untag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        keys = body.get("TagKeys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ApiError("InvalidRequestException", "TagKeys: must be a list of strings")
        with self._lock, self._db:
            arn = self._known_arn(body)
            self._db.executemany("DELETE FROM tags WHERE arn = ? AND key = ?",
                                 [(arn, k) for k in keys])
        return {}

    def _list_tags(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            arn = self._known_arn(body)
            tags = [{"Key": k, "Value": v} for k, v in sorted(self._tags(arn).items())]
        page, token = self._page(tags, body.get("NextToken"))
        return {"Tags": page, **({"NextToken": token} if token else {})}

    # -- storage helpers -------------------------------------------------------------------

    def _arn(self, name: str) -> str:
        return self._arn_prefix + name

    def _find(self, name: str) -> str | None:
        row = self._db.execute("SELECT body FROM rules WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _resolve(self, body: Mapping[str, Any]) -> str:
        """The rule named by RuleName and/or RuleARN (both must agree), or InvalidRequestException."""
        name, arn = body.get("RuleName"), body.get("RuleARN")
        if name is None and arn is None:
            raise ApiError("InvalidRequestException", "RuleName: is required (accepted: the "
                           "RuleName or the RuleARN of an existing rule)")
        by_arn = None
        if arn is not None:
            row = self._db.execute("SELECT name FROM rules WHERE arn = ?", (str(arn),)).fetchone()
            by_arn = row[0] if row else None
        if name is not None and arn is not None and by_arn != name:
            raise ApiError("InvalidRequestException", f"RuleARN: {arn!r} is not the ARN of rule "
                           f"{name!r} (accepted: RuleName or RuleARN, or both of the same rule)")
        found = name if name is not None else by_arn
        if not isinstance(found, str) or self._find(found) is None:
            shown = name if name is not None else arn
            raise ApiError("InvalidRequestException", f"sampling rule {shown!r} does not exist "
                           "(accepted: an existing RuleName or RuleARN)")
        return found

    def _known_arn(self, body: Mapping[str, Any]) -> str:
        arn = body.get("ResourceARN")
        if not isinstance(arn, str) or not 1 <= len(arn) <= 1011:
            raise ApiError("InvalidRequestException", "ResourceARN: is required (accepted: an ARN)")
        if self._db.execute("SELECT 1 FROM rules WHERE arn = ?", (arn,)).fetchone() is None:
            raise ApiError("ResourceNotFoundException", f"{arn} was not found", 404, ResourceName=arn)
        return arn

    def _insert(self, rule: Mapping[str, Any], tags: list[dict[str, str]]) -> None:
        now = self._clock()
        name = str(rule["RuleName"])
        stored = {**Rule.from_api(rule).to_api(), "RuleName": name}
        self._db.execute("INSERT INTO rules VALUES (?, ?, ?, ?, ?)",
                         (name, self._arn(name), json.dumps(stored), now, now))
        self._set_tags(self._arn(name), tags)
        self._touch()

    def _replace(self, name: str, rule: Mapping[str, Any]) -> None:
        stored = {**Rule.from_api({**rule, "RuleName": name}).to_api()}
        self._db.execute("UPDATE rules SET body = ?, modified = ? WHERE name = ?",
                         (json.dumps(stored), self._clock(), name))
        self._touch()

    def _touch(self) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_modification', ?)",
                         (self._clock(),))

    def _last_modification(self) -> float:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_modification'").fetchone()
        return float(row[0]) if row else 0.0

    def _tags(self, arn: str) -> dict[str, str]:
        rows = self._db.execute("SELECT key, value FROM tags WHERE arn = ?", (arn,)).fetchall()
        return {str(k): str(v) for k, v in rows}

    def _set_tags(self, arn: str, tags: list[dict[str, str]]) -> None:
        self._db.execute("DELETE FROM tags WHERE arn = ?", (arn,))
        self._db.executemany("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)",
                             [(arn, t["Key"], t["Value"]) for t in tags])

    def _record(self, name: str) -> dict[str, Any]:
        row = self._db.execute("SELECT body, arn, created, modified FROM rules WHERE name = ?",
                               (name,)).fetchone()
        body, arn, created, modified = row
        rule = {**json.loads(body), "RuleARN": arn}
        return {"SamplingRule": rule, "CreatedAt": created, "ModifiedAt": modified}

    def _page(self, items: list[Any], token: object) -> tuple[list[Any], str | None]:
        """One page of ``items``; the token is the next offset, so it survives a restart (SQLite)."""
        start = 0
        if token is not None:
            try:
                start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
            except (ValueError, UnicodeDecodeError):
                start = -1
            if not 0 <= start <= len(items):
                raise ApiError("InvalidRequestException", "NextToken: not a token from a "
                               "previous page (accepted: the NextToken of the last answer)")
        end = start + self._page_size
        more = end < len(items)
        return items[start:end], base64.urlsafe_b64encode(str(end).encode()).decode() if more else None

    # -- reservoir accounting and boosts -----------------------------------------------------

    def _record_stats(self, doc: Mapping[str, Any], now: float) -> None:
        """Keep the client's request rate (over the time since its last report) for quota splits."""
        name, client = doc["RuleName"], doc["ClientID"]
        row = self._db.execute("SELECT seen FROM clients WHERE rule = ? AND client = ?",
                               (name, client)).fetchone()
        window = max(1.0, now - row[0]) if row else float(INTERVAL)
        self._db.execute("INSERT OR REPLACE INTO clients VALUES (?, ?, ?, ?)",
                         (name, client, doc["RequestCount"] / window, now))
        self._db.execute("INSERT INTO stats VALUES (?, ?, ?, ?, ?)",
                         (name, now, doc["RequestCount"], doc["SampledCount"],
                          doc.get("BorrowCount", 0)))
        self._db.execute("DELETE FROM stats WHERE ts < ?", (now - 3600,))
        self._db.execute("DELETE FROM clients WHERE seen < ?", (now - 3600,))

    def _quota(self, name: str, client: str, size: int, now: float) -> int:
        rows = self._db.execute("SELECT client, rate FROM clients WHERE rule = ? AND seen >= ?",
                                (name, now - ACTIVE_CLIENT_WINDOW)).fetchall()
        return _allocate(size, {str(c): float(r) for c, r in rows}).get(client, 0)

    def _consider_boost(self, doc: Mapping[str, Any], now: float) -> None:
        """Anomalies start a boost at MaxRate unless one is running or the cooldown has not passed."""
        rule = json.loads(self._find(doc["RuleName"]) or "{}")
        boost = rule.get("SamplingRateBoost")
        if not boost or doc["AnomalyCount"] <= 0:
            return
        row = self._db.execute("SELECT until, started FROM boosts WHERE rule = ?",
                               (doc["RuleName"],)).fetchone()
        if row and (row[0] > now or now - row[1] < boost["CooldownWindowMinutes"] * 60):
            return
        self._db.execute("INSERT OR REPLACE INTO boosts VALUES (?, ?, ?, ?)",
                         (doc["RuleName"], boost["MaxRate"], now + BOOST_SECONDS, now))

    def _target(self, name: str, docs: list[dict[str, Any]], now: float) -> dict[str, Any]:
        rule = json.loads(self._find(name) or "{}")
        target: dict[str, Any] = {"RuleName": name, "FixedRate": rule["FixedRate"],
                                  "Interval": INTERVAL}
        clients = [d["ClientID"] for d in docs if d["RuleName"] == name]
        if clients:
            target["ReservoirQuota"] = self._quota(name, clients[-1], rule["ReservoirSize"], now)
            target["ReservoirQuotaTTL"] = now + QUOTA_TTL
        row = self._db.execute("SELECT rate, until FROM boosts WHERE rule = ? AND until > ?",
                               (name, now)).fetchone()
        if row:
            target["SamplingBoost"] = {"BoostRate": row[0], "BoostRateTTL": row[1]}
        return target


def _allocate(size: int, rates: Mapping[str, float]) -> dict[str, int]:
    """``size`` whole traces split in proportion to ``rates``; the largest remainders (ties by
    client id, so every call computes the same split) get the units rounding left over."""
    total = sum(rates.values())
    exact = {c: size * (r / total if total > 0 else 1 / len(rates)) for c, r in rates.items()}
    parts = {c: math.floor(e + 1e-9) for c, e in exact.items()}
    left = size - sum(parts.values())
    for client in sorted(exact, key=lambda c: (parts[c] - exact[c], c))[:max(0, left)]:
        parts[client] += 1
    return parts


def _record_order(record: Mapping[str, Any]) -> tuple[int, int, str]:
    rule = record["SamplingRule"]
    return (rule["RuleName"] == DEFAULT_RULE_NAME, rule["Priority"], rule["RuleName"])


def _unknown_rule(name: object) -> dict[str, str]:
    return {"RuleName": str(name), "ErrorCode": "400", "Message": "no sampling rule of that name"}


def _doc_list(body: Mapping[str, Any], key: str, required: bool) -> list[dict[str, Any]]:
    docs = body.get(key)
    if docs is None and not required:
        return []
    if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
        raise ApiError("InvalidRequestException", f"{key}: is required (accepted: a list)")
    if len(docs) > MAX_STATS_DOCS:
        raise ApiError("InvalidRequestException",
                       f"{key}: {len(docs)} documents (accepted: at most {MAX_STATS_DOCS})")
    return docs


def _check_counts(doc: Mapping[str, Any], required: tuple[str, ...], counts: tuple[str, ...]) -> None:
    for key in required:
        if key not in doc:
            raise ApiError("InvalidRequestException", f"{key}: is required")
    for key in counts:
        if key in doc and (not validate.is_int(doc[key]) or doc[key] < 0):
            raise ApiError("InvalidRequestException", f"{key}: {doc[key]!r} (accepted: integer >= 0)")
    if not validate.is_number(doc["Timestamp"]):
        raise ApiError("InvalidRequestException", "Timestamp: (accepted: epoch seconds)")
    names = {k: doc[k] for k in ("RuleName", "ServiceName") if k in doc}
    issues = validate.check_rule(names, partial=True)  # the same length limits as on rules
    if issues:
        raise ApiError.invalid(issues)


def _check_stats_doc(doc: Mapping[str, Any]) -> None:
    _check_counts(doc, ("RuleName", "ClientID", "Timestamp", "RequestCount", "SampledCount"),
                  ("RequestCount", "SampledCount", "BorrowCount"))
    client = doc["ClientID"]
    if not isinstance(client, str) or len(client) != 24:
        raise ApiError("InvalidRequestException", f"ClientID: {client!r} (accepted: 24 characters)")


def _check_boost_doc(doc: Mapping[str, Any]) -> None:
    counts = ("AnomalyCount", "TotalCount", "SampledAnomalyCount")
    _check_counts(doc, ("RuleName", "ServiceName", "Timestamp", *counts), counts)
