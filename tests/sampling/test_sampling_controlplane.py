"""The local control plane through real boto3: operations, validation and error shapes,
pagination, tags, reservoir accounting, boosts, summaries, and the framework-free handler."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tracekit.sampling.controlplane import ControlPlane


def rule(name: str, priority: int, **extra: Any) -> dict[str, Any]:
    base = {"RuleName": name, "ResourceARN": "*", "Priority": priority, "FixedRate": 0.1,
            "ReservoirSize": 4, "ServiceName": "*", "ServiceType": "*", "Host": "*",
            "HTTPMethod": "*", "URLPath": "*", "Version": 1}
    return {**base, **extra}


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response: Any = exc.value.response
    return (response["Error"]["Code"], response["Error"]["Message"],
            response["ResponseMetadata"]["HTTPStatusCode"])


def names(xray: Any) -> list[str]:
    pages = xray.get_paginator("get_sampling_rules").paginate()
    return [r["SamplingRule"]["RuleName"] for p in pages for r in p["SamplingRuleRecords"]]


def stats_doc(name: str, client: str, requests: int, sampled: int = 0) -> dict[str, Any]:
    return {"RuleName": name, "ClientID": client * 24, "Timestamp": dt.datetime.now(dt.UTC),
            "RequestCount": requests, "SampledCount": sampled, "BorrowCount": 0}


def test_crud_and_pagination(xray: Any) -> None:
    assert names(xray) == ["Default"]
    for i, name in enumerate(["c", "a", "b"]):
        created = xray.create_sampling_rule(SamplingRule=rule(name, 10 + i))["SamplingRuleRecord"]
        assert created["SamplingRule"]["RuleARN"].endswith(f":sampling-rule/{name}")
        assert isinstance(created["CreatedAt"], dt.datetime)
    first = xray.get_sampling_rules()
    assert len(first["SamplingRuleRecords"]) == 2 and first["NextToken"]
    assert names(xray) == ["c", "a", "b", "Default"]
    updated = xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": "a", "FixedRate": 0.5,
                                                            "URLPath": "/x/*"})
    assert updated["SamplingRuleRecord"]["SamplingRule"]["FixedRate"] == 0.5
    assert updated["SamplingRuleRecord"]["SamplingRule"]["URLPath"] == "/x/*"
    arn = updated["SamplingRuleRecord"]["SamplingRule"]["RuleARN"]
    xray.update_sampling_rule(SamplingRuleUpdate={"RuleARN": arn, "Priority": 1})
    assert names(xray)[0] == "a"
    deleted = xray.delete_sampling_rule(RuleARN=arn)["SamplingRuleRecord"]["SamplingRule"]
    assert deleted["RuleName"] == "a"
    assert names(xray) == ["c", "b", "Default"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"FixedRate": 1.5}, "FixedRate: 1.5 is out of range (accepted: a number from 0 to 1)"),
        ({"Priority": 10000}, "Priority: 10000 is out of range"),
        ({"URLPath": "/" * 129}, "URLPath: has 129 characters"),
        ({"Version": 2}, "Version: 2 is not supported (accepted: 1)"),
        ({"Attributes": {"k": "v" * 33}}, "Attributes.k: key or value is not a string"),
        ({"SamplingRateBoost": {"MaxRate": 1.5, "CooldownWindowMinutes": 1}},
         "SamplingRateBoost.MaxRate: 1.5 is out of range"),
    ],
)
def test_create_validation(xray: Any, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientError) as exc:
        xray.create_sampling_rule(SamplingRule=rule("r", 5, **bad))
    code, text, status = error(exc)
    assert (code, status) == ("InvalidRequestException", 400)
    assert text.startswith(message)


def test_errors_the_api_defines(plane: ControlPlane, xray: Any) -> None:
    xray.create_sampling_rule(SamplingRule=rule("dup", 5))
    with pytest.raises(xray.exceptions.InvalidRequestException, match="already exists"):
        xray.create_sampling_rule(SamplingRule=rule("dup", 6))
    with pytest.raises(xray.exceptions.InvalidRequestException, match="cannot be deleted"):
        xray.delete_sampling_rule(RuleName="Default")
    with pytest.raises(xray.exceptions.InvalidRequestException, match="URLPath: cannot change"):
        xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": "Default", "URLPath": "/a"})
    xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": "Default", "FixedRate": 0.2,
                                                  "ReservoirSize": 3})
    with pytest.raises(xray.exceptions.InvalidRequestException, match="does not exist"):
        xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": "nope", "FixedRate": 0.2})
    with pytest.raises(xray.exceptions.InvalidRequestException, match="NextToken"):
        xray.get_sampling_rules(NextToken="garbage!")
    plane.throttle_next("/GetSamplingRules")
    with pytest.raises(xray.exceptions.ThrottledException) as exc:
        xray.get_sampling_rules()
    assert error(exc)[2] == 429
    assert names(xray) == ["dup", "Default"]


def test_more_than_a_hundred_rules_paginate(clock: Any) -> None:
    import boto3

    plane = ControlPlane(clock=clock, max_rules=130, page_size=100).start()
    try:
        xray = boto3.client("xray", endpoint_url=plane.url, region_name="us-east-1")
        for i in range(120):
            xray.create_sampling_rule(SamplingRule=rule(f"r{i:03}", i + 1))
        first = xray.get_sampling_rules()
        assert len(first["SamplingRuleRecords"]) == 100 and first["NextToken"]
        assert names(xray) == [f"r{i:03}" for i in range(120)] + ["Default"]
    finally:
        plane.stop()


def test_rule_addressed_by_name_and_arn(xray: Any) -> None:
    arn = xray.create_sampling_rule(SamplingRule=rule("a", 1))["SamplingRuleRecord"][
        "SamplingRule"]["RuleARN"]
    assert arn == "arn:aws:xray:us-east-1:000000000000:sampling-rule/a"
    xray.create_sampling_rule(SamplingRule=rule("b", 2))
    update = {"RuleName": "b", "RuleARN": arn, "FixedRate": 0.9}
    with pytest.raises(xray.exceptions.InvalidRequestException, match="not the ARN of rule 'b'"):
        xray.update_sampling_rule(SamplingRuleUpdate=update)
    assert xray.update_sampling_rule(SamplingRuleUpdate={**update, "RuleName": "a"})
    with pytest.raises(xray.exceptions.InvalidRequestException, match="RuleName: is required"):
        xray.delete_sampling_rule()
    for token in ("LTU=", "OTk5"):  # offsets -5 and 999: not tokens this server handed out
        with pytest.raises(xray.exceptions.InvalidRequestException, match="NextToken"):
            xray.get_sampling_rules(NextToken=token)


def test_rule_limit() -> None:
    import boto3

    plane = ControlPlane(max_rules=2).start()
    try:
        xray = boto3.client("xray", endpoint_url=plane.url, region_name="us-east-1")
        xray.create_sampling_rule(SamplingRule=rule("a", 1))
        xray.create_sampling_rule(SamplingRule=rule("b", 2))
        with pytest.raises(xray.exceptions.RuleLimitExceededException):
            xray.create_sampling_rule(SamplingRule=rule("c", 3))
    finally:
        plane.stop()


def test_tags(xray: Any) -> None:
    created = xray.create_sampling_rule(SamplingRule=rule("t", 5),
                                        Tags=[{"Key": "team", "Value": "pay"}])
    arn = created["SamplingRuleRecord"]["SamplingRule"]["RuleARN"]
    xray.tag_resource(ResourceARN=arn, Tags=[{"Key": "env", "Value": "prod"}])
    assert xray.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "pay"}]
    xray.untag_resource(ResourceARN=arn, TagKeys=["team"])
    assert xray.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "env", "Value": "prod"}]
    with pytest.raises(xray.exceptions.ResourceNotFoundException) as exc:
        xray.list_tags_for_resource(ResourceARN=arn + "x")
    assert error(exc)[2] == 404
    with pytest.raises(xray.exceptions.InvalidRequestException, match="aws:"):
        xray.tag_resource(ResourceARN=arn, Tags=[{"Key": "aws:x", "Value": "1"}])
    with pytest.raises(xray.exceptions.InvalidRequestException, match="bad value '<b>'"):
        xray.tag_resource(ResourceARN=arn, Tags=[{"Key": "owner", "Value": "<b>"}])
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    with pytest.raises(xray.exceptions.TooManyTagsException):
        xray.tag_resource(ResourceARN=arn, Tags=many)


def test_reservoir_split_by_request_rate(seeded: ControlPlane, xray: Any, clock: Any) -> None:
    first = xray.get_sampling_targets(SamplingStatisticsDocuments=[
        stats_doc("High-priority transactions", "a", 100)])
    [doc] = first["SamplingTargetDocuments"]
    assert (doc["RuleName"], doc["ReservoirQuota"], doc["FixedRate"], doc["Interval"]) == (
        "High-priority transactions", 5, 1.0, 10)
    assert doc["ReservoirQuotaTTL"].timestamp() == pytest.approx(clock() + 15)
    assert first["LastRuleModification"].timestamp() <= clock()
    clock.advance(1)
    second = xray.get_sampling_targets(SamplingStatisticsDocuments=[
        stats_doc("High-priority transactions", "b", 300)])
    # 5 * 30/(10+30) = 3.75 and 5 * 10/40 = 1.25: the left-over unit goes to the larger remainder
    assert second["SamplingTargetDocuments"][0]["ReservoirQuota"] == 4
    clock.advance(9)
    again = xray.get_sampling_targets(SamplingStatisticsDocuments=[
        stats_doc("High-priority transactions", "a", 100)])
    assert again["SamplingTargetDocuments"][0]["ReservoirQuota"] == 1
    clock.advance(60)  # b went quiet: a gets everything again
    alone = xray.get_sampling_targets(SamplingStatisticsDocuments=[
        stats_doc("High-priority transactions", "a", 100)])
    assert alone["SamplingTargetDocuments"][0]["ReservoirQuota"] == 5


def test_small_reservoir_is_not_lost_between_clients(seeded: ControlPlane, xray: Any) -> None:
    quotas = [xray.get_sampling_targets(SamplingStatisticsDocuments=[stats_doc("Default", c, 50)])[
        "SamplingTargetDocuments"][0]["ReservoirQuota"] for c in "ab"]
    again = xray.get_sampling_targets(SamplingStatisticsDocuments=[stats_doc("Default", "a", 50)])
    assert sorted(quotas) == [0, 1]  # a reservoir of 1 among two equal clients: 1 in total
    assert again["SamplingTargetDocuments"][0]["ReservoirQuota"] == quotas[0]  # stable split


def test_unknown_rule_statistics_unprocessed(seeded: ControlPlane, xray: Any) -> None:
    answer = xray.get_sampling_targets(SamplingStatisticsDocuments=[stats_doc("ghost", "a", 1)])
    assert answer["SamplingTargetDocuments"] == []
    assert answer["UnprocessedStatistics"][0]["RuleName"] == "ghost"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [  # what botocore already refuses client-side must still be refused by the server
        ("/SamplingTargets", {"SamplingStatisticsDocuments": [{
            "RuleName": "Default", "ClientID": "short", "Timestamp": 1, "RequestCount": 1,
            "SampledCount": 0}]}, "ClientID: 'short' (accepted: 24 characters)"),
        ("/SamplingTargets", {"SamplingStatisticsDocuments": [{
            "RuleName": "Default", "ClientID": "a" * 24, "Timestamp": 1, "RequestCount": -1,
            "SampledCount": 0}]}, "RequestCount: -1 (accepted: integer >= 0)"),
        ("/SamplingTargets", {}, "SamplingStatisticsDocuments: is required"),
        ("/SamplingTargets", {"SamplingStatisticsDocuments": [], "SamplingBoostStatisticsDocuments": [{
            "RuleName": "Default", "ServiceName": "s" * 65, "Timestamp": 1, "AnomalyCount": 1,
            "TotalCount": 1, "SampledAnomalyCount": 0}]}, "ServiceName: has 65 characters"),
        ("/CreateSamplingRule", {"SamplingRule": rule("r", 1, SamplingRateBoost={
            "MaxRate": 0.5, "CooldownWindowMinutes": -1})},
         "SamplingRateBoost.CooldownWindowMinutes: -1 is out of range"),
        ("/CreateSamplingRule", {"SamplingRule": {"RuleName": "r"}}, "ResourceARN: is required"),
        ("/UntagResource", {"ResourceARN": "x", "TagKeys": "k"}, "TagKeys: must be a list"),
    ],
)
def test_server_side_validation(plane: ControlPlane, path: str, body: dict[str, Any],
                                message: str) -> None:
    status, headers, payload = plane.handle("POST", path, {}, json.dumps(body).encode())
    assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestException:")
    assert json.loads(payload)["Message"].startswith(message)


def test_boost_and_cooldown(seeded: ControlPlane, xray: Any, clock: Any) -> None:
    def report(anomalies: int) -> dict[str, Any]:
        answer = xray.get_sampling_targets(
            SamplingStatisticsDocuments=[stats_doc("API calls", "a", 10)],
            SamplingBoostStatisticsDocuments=[{
                "RuleName": "API calls", "ServiceName": "order-service",
                "Timestamp": dt.datetime.now(dt.UTC), "AnomalyCount": anomalies,
                "TotalCount": 10, "SampledAnomalyCount": 0}])
        return dict(answer["SamplingTargetDocuments"][0])

    assert "SamplingBoost" not in report(0)
    boost = report(3)["SamplingBoost"]
    assert boost["BoostRate"] == 0.5
    assert boost["BoostRateTTL"].timestamp() == pytest.approx(clock() + 60)
    clock.advance(61)
    assert "SamplingBoost" not in report(3)  # within the 15 minute cooldown
    clock.advance(15 * 60)
    assert report(3)["SamplingBoost"]["BoostRate"] == 0.5


def test_statistic_summaries(seeded: ControlPlane, xray: Any) -> None:
    xray.get_sampling_targets(SamplingStatisticsDocuments=[stats_doc("Default", "a", 10, 2),
                                                           stats_doc("Default", "b", 5, 1)])
    [summary] = xray.get_sampling_statistic_summaries()["SamplingStatisticSummaries"]
    assert (summary["RuleName"], summary["RequestCount"], summary["SampledCount"]) == ("Default", 15, 3)


def test_handler_without_http(tmp_path: Any, clock: Any) -> None:
    db = str(tmp_path / "cp.db")
    plane = ControlPlane(db, clock=clock)
    status, headers, body = plane.handle("POST", "/GetSamplingRules", {}, b"")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["SamplingRuleRecords"][0]["SamplingRule"]["RuleName"] == "Default"
    status, headers, body = plane.handle("POST", "/CreateSamplingRule", {}, b"{not json")
    assert status == 400 and json.loads(body)["__type"] == "SerializationException"
    status, headers, body = plane.handle("GET", "/Nope", {}, b"")
    assert status == 404 and headers["x-amzn-ErrorType"].startswith("UnknownOperationException")
    status, _, _ = plane.handle("POST", "/CreateSamplingRule", {},
                                json.dumps({"SamplingRule": rule("kept", 3)}).encode())
    assert status == 200
    plane.stop()
    reopened = ControlPlane(db, clock=clock)  # SQLite keeps the rules
    _, _, body = reopened.handle("POST", "/GetSamplingRules", {}, b"{}")
    assert [r["SamplingRule"]["RuleName"] for r in json.loads(body)["SamplingRuleRecords"]] == [
        "kept", "Default"]
    reopened.stop()


def test_oversized_body_refused(plane: ControlPlane) -> None:
    import socket

    host, port = plane.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 1000000000\r\n\r\n")  # never sent: must not be read
        answer = conn.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["__type"] == "InvalidRequestException"


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"[" * 100_000])
def test_bodies_that_are_not_a_json_object(plane: ControlPlane, body: bytes) -> None:
    status, headers, _ = plane.handle("POST", "/GetSamplingRules", {}, body)
    assert (status, headers["x-amzn-ErrorType"]) == (400, "SerializationException:")
