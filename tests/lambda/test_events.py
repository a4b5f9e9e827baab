"""Event-source recognition on the event shapes Lambda delivers."""

from __future__ import annotations

from typing import Any

import pytest

from tracekit.aws_lambda import events

TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=2222222222222222;Sampled=1"

API_V1 = {
    "resource": "/orders/{id}", "path": "/orders/7", "httpMethod": "POST",
    "headers": {"Host": "abc.execute-api.us-east-1.amazonaws.com", "User-Agent": "curl/8",
                "X-Forwarded-Proto": "https"},
    "requestContext": {"domainName": "abc.execute-api.us-east-1.amazonaws.com",
                       "identity": {"sourceIp": "198.51.100.1", "userAgent": "curl/8"}},
}
API_V2 = {
    "version": "2.0", "routeKey": "GET /items/{id}", "rawPath": "/items/1",
    "requestContext": {"domainName": "api.example.com",
                       "http": {"method": "GET", "path": "/items/1", "sourceIp": "203.0.113.5",
                                "userAgent": "ua"}},
}
FUNCTION_URL = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/",
    "requestContext": {"domainName": "xyz.lambda-url.us-east-1.on.aws",
                       "http": {"method": "PUT", "path": "/", "sourceIp": "192.0.2.1"}},
}
ALB = {
    "httpMethod": "GET", "path": "/health",
    "headers": {"host": "lb.example.com", "x-forwarded-for": "192.0.2.7, 10.0.0.1"},
    "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:::targetgroup/tg/1"}},
}
SQS = {"Records": [
    {"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
     "attributes": {"AWSTraceHeader": TRACE}},
    {"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
     "attributes": {"AWSTraceHeader": TRACE}},  # the same producer twice: one link
    {"eventSource": "aws:sqs", "attributes": {}},
]}
SNS = {"Records": [{"EventSource": "aws:sns", "Sns": {"TopicArn": "arn:aws:sns:us-east-1:1:alerts"}}]}
S3 = {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "uploads"}}}]}
DYNAMODB = {"Records": [{"eventSource": "aws:dynamodb",
                         "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/2024"}]}
KINESIS = {"Records": [{"eventSource": "aws:kinesis",
                        "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s"}]}
EVENTBRIDGE = {"source": "orders", "detail-type": "OrderPlaced",
               "detail": {"id": 1, "X-Amzn-Trace-Id": TRACE}}
SCHEDULE = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
STEP_FUNCTIONS = {"Execution": {"Id": "arn:aws:states:us-east-1:1:execution:machine:run-1"},
                  "StateMachine": {"Id": "arn:aws:states:us-east-1:1:stateMachine:machine"}}


@pytest.mark.parametrize(
    ("event", "source", "trigger"),
    [
        (API_V1, "aws:apigateway:rest", "http"),
        (API_V2, "aws:apigateway:http", "http"),
        (FUNCTION_URL, "aws:lambda:url", "http"),
        (ALB, "aws:elb", "http"),
        ({**API_V1, "version": "1.0"}, "aws:apigateway:http", "http"),  # HTTP API, payload format 1.0
        (SQS, "aws:sqs", "pubsub"),
        (SNS, "aws:sns", "pubsub"),
        (S3, "aws:s3", "datasource"),
        (DYNAMODB, "aws:dynamodb", "datasource"),
        (KINESIS, "aws:kinesis", "pubsub"),
        (EVENTBRIDGE, "aws:events", "pubsub"),
        (SCHEDULE, "aws:events", "timer"),
        (STEP_FUNCTIONS, "aws:states", "other"),
    ],
)
def test_each_source_is_recognised(event: dict[str, Any], source: str, trigger: str) -> None:
    found = events.recognise(event)
    assert (found.source, found.trigger) == (source, trigger)


def test_http_attributes_fill_the_xray_http_block() -> None:
    assert events.recognise(API_V1).attributes == {
        "http.request.method": "POST",
        "url.full": "https://abc.execute-api.us-east-1.amazonaws.com/orders/7",
        "user_agent.original": "curl/8",
        "client.address": "198.51.100.1",
        "x_forwarded_for": True,
        "http.route": "/orders/{id}",
    }
    v2 = events.recognise(API_V2).attributes
    assert v2["url.full"] == "https://api.example.com/items/1" and v2["http.route"] == "/items/{id}"
    assert "http.route" not in events.recognise(FUNCTION_URL).attributes  # $default is no route
    alb = events.recognise(ALB).attributes
    assert alb["url.full"] == "http://lb.example.com/health" and alb["client.address"] == "192.0.2.7"


def test_query_strings_stay_out_of_urls() -> None:
    event = {**API_V2, "rawQueryString": "token=secret"}
    assert "secret" not in str(events.recognise(event).attributes)


def test_message_sources_name_their_destination_and_producers() -> None:
    sqs = events.recognise(SQS)
    assert sqs.trace_headers == [TRACE]
    assert sqs.attributes == {
        "messaging.batch.message_count": 3,
        "messaging.system": "aws_sqs",
        "aws.lambda.event_source_arn": "arn:aws:sqs:us-east-1:123456789012:orders",
        "messaging.destination.name": "orders",
    }
    assert events.recognise(EVENTBRIDGE).trace_headers == [TRACE]
    assert events.recognise(S3).attributes["aws.lambda.event_source_arn"] == "arn:aws:s3:::uploads"


def test_links_are_capped() -> None:
    records = [{"eventSource": "aws:sqs", "attributes": {"AWSTraceHeader": f"{TRACE};n={i}"}}
               for i in range(events.MAX_LINKS + 50)]
    assert len(events.recognise({"Records": records}).trace_headers) == events.MAX_LINKS


@pytest.mark.parametrize(
    "event",
    [None, 42, "text", [], {}, {"Records": []}, {"Records": ["x"]}, {"Records": [{"eventSource": 5}]},
     {"version": "2.0", "requestContext": "nope"}, {"httpMethod": "GET", "requestContext": []},
     {"detail-type": 1, "source": None, "detail": "x"}, {"Execution": {"Id": 3}},
     {"Records": [{"eventSource": "aws:sqs", "attributes": "not-a-dict"}]}],
)
def test_anything_else_is_other_and_never_raises(event: Any) -> None:
    found = events.recognise(event)
    assert found.source in ("other", "aws:sqs", "aws:events")
    assert isinstance(found.attributes, dict)


# Shapes as the services deliver them (abridged from the AWS documentation's sample events).
REST_WITH_STAGE = {
    "resource": "/pets/{petId}", "path": "/pets/42", "httpMethod": "GET",
    "headers": {"Host": "abcdef123.execute-api.us-east-1.amazonaws.com", "X-Forwarded-Proto": "https"},
    "multiValueHeaders": {"Host": ["abcdef123.execute-api.us-east-1.amazonaws.com"]},
    "queryStringParameters": {"token": "s3cret"}, "pathParameters": {"petId": "42"},
    "requestContext": {"domainName": "abcdef123.execute-api.us-east-1.amazonaws.com", "httpMethod": "GET",
                       "identity": {"sourceIp": "198.51.100.7", "userAgent": "curl/8.4.0"},
                       "path": "/prod/pets/42", "resourcePath": "/pets/{petId}", "stage": "prod"},
    "body": None, "isBase64Encoded": False,
}
ALB_MULTI_VALUE = {
    "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/1"}},
    "httpMethod": "GET", "path": "/lambda", "multiValueQueryStringParameters": {"q": ["1"]},
    "multiValueHeaders": {"host": ["lb-1.us-east-1.elb.amazonaws.com"], "user-agent": ["Mozilla/5.0"],
                          "x-forwarded-for": ["72.12.164.125, 10.0.0.1"], "x-forwarded-proto": ["https"]},
    "body": "", "isBase64Encoded": False,
}
KINESIS_RECORD = {
    "kinesis": {"partitionKey": "1", "sequenceNumber": "4959", "data": "SGVsbG8="},
    "eventSource": "aws:kinesis", "eventName": "aws:kinesis:record", "awsRegion": "us-east-2",
    "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
}


def test_documented_event_shapes_fill_urls_and_names() -> None:
    rest = events.recognise(REST_WITH_STAGE).attributes
    assert rest["url.full"] == "https://abcdef123.execute-api.us-east-1.amazonaws.com/prod/pets/42"
    assert rest["http.route"] == "/pets/{petId}" and "s3cret" not in str(rest)
    alb = events.recognise(ALB_MULTI_VALUE)
    assert (alb.source, alb.attributes["url.full"]) == ("aws:elb", "https://lb-1.us-east-1.elb.amazonaws.com/lambda")
    assert alb.attributes["client.address"] == "72.12.164.125"
    assert alb.attributes["user_agent.original"] == "Mozilla/5.0"
    kinesis = events.recognise({"Records": [KINESIS_RECORD]}).attributes
    assert kinesis["messaging.destination.name"] == "lambda-stream"
