"""AWS SDK calls recorded the way the X-Ray SDK records them (migration-and-aws-facts.md §1).

The OpenTelemetry botocore instrumentation makes the span; the hooks here add what the X-Ray SDK
puts in an ``aws`` subsegment and the contrib does not: the service's endpoint prefix as the name
(``dynamodb``, ``states``), the request/response parameters the X-Ray SDK keeps for each operation
(``table_name``, ``queue_url``, ``message_count``...), and S3's ``id_2``. ``xray/segments.py`` turns
them into the ``aws`` block. Every hook is guarded: a failure here is counted, the call goes on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import CarrierT, Setter, default_setter
from opentelemetry.trace import Span

from tracekit._shared import stats
from tracekit.tracing.propagation import XRayPropagator
from tracekit.xray.segments import AWS_PARAMS_ATTR


@dataclass(frozen=True)
class Rule:
    """What one operation records: parameters copied (snake_case), and maps/lists summarised."""

    request: tuple[str, ...] = ()
    response: tuple[str, ...] = ()
    request_keys: Mapping[str, str] = field(default_factory=dict)
    """Map parameter -> field holding its keys (``RequestItems`` -> ``table_names``)."""
    request_count: Mapping[str, str] = field(default_factory=dict)
    response_count: Mapping[str, str] = field(default_factory=dict)
    rename: Mapping[str, str] = field(default_factory=dict)
    """Parameter -> field name other than its snake_case form."""


COMMON: dict[str, tuple[str, ...]] = {
    "dynamodb": ("TableName",),
    "sqs": ("QueueUrl",),
    "sns": ("TopicArn",),
    "s3": ("Bucket", "Key", "VersionId", "Prefix"),
}
"""Parameters recorded on every operation of the service that has them."""
_CAPACITY = ("ConsumedCapacity",)
_WRITE = ("ConsumedCapacity", "ItemCollectionMetrics")
_READ = ("AttributesToGet", "ConsistentRead", "IndexName", "Limit", "ProjectionExpression", "Select")
RULES: dict[tuple[str, str], Rule] = {
    ("dynamodb", "GetItem"): Rule(("ConsistentRead", "ProjectionExpression"), _CAPACITY),
    ("dynamodb", "PutItem"): Rule(response=_WRITE),
    ("dynamodb", "UpdateItem"): Rule(response=_WRITE),
    ("dynamodb", "DeleteItem"): Rule(response=_WRITE),
    ("dynamodb", "BatchGetItem"): Rule(response=_CAPACITY, request_keys={"RequestItems": "table_names"}),
    ("dynamodb", "BatchWriteItem"): Rule(response=_WRITE, request_keys={"RequestItems": "table_names"}),
    ("dynamodb", "Query"): Rule((*_READ, "ScanIndexForward"), _CAPACITY),
    ("dynamodb", "Scan"): Rule((*_READ, "Segment", "TotalSegments"), (*_CAPACITY, "Count", "ScannedCount")),
    ("dynamodb", "ListTables"): Rule(("ExclusiveStartTableName", "Limit"),
                                     response_count={"TableNames": "table_count"}),
    ("dynamodb", "CreateTable"): Rule(("GlobalSecondaryIndexes", "LocalSecondaryIndexes",
                                       "ProvisionedThroughput")),
    ("dynamodb", "UpdateTable"): Rule(("AttributeDefinitions", "GlobalSecondaryIndexUpdates",
                                       "ProvisionedThroughput")),
    ("sqs", "SendMessage"): Rule(("DelaySeconds",), ("MessageId",),
                                 request_keys={"MessageAttributes": "message_attribute_names"}),
    ("sqs", "SendMessageBatch"): Rule(request_count={"Entries": "message_count"},
                                      response_count={"Failed": "failed_count",
                                                      "Successful": "successful_count"}),
    ("sqs", "ReceiveMessage"): Rule(("AttributeNames", "MaxNumberOfMessages", "MessageAttributeNames",
                                     "VisibilityTimeout", "WaitTimeSeconds"),
                                    response_count={"Messages": "message_count"}),
    ("sqs", "ChangeMessageVisibility"): Rule(("VisibilityTimeout",)),
    ("sqs", "ChangeMessageVisibilityBatch"): Rule(response=("Failed",)),
    ("sqs", "DeleteMessageBatch"): Rule(response=("Failed",)),
    ("sqs", "CreateQueue"): Rule(("Attributes", "QueueName")),
    ("sqs", "GetQueueUrl"): Rule(("QueueName", "QueueOwnerAWSAccountId"), ("QueueUrl",)),
    ("sqs", "GetQueueAttributes"): Rule(response=("Attributes",)),
    ("sqs", "SetQueueAttributes"): Rule(request_keys={"Attributes": "attribute_names"}),
    ("sqs", "ListQueues"): Rule(("QueueNamePrefix",), response_count={"QueueUrls": "queue_count"}),
    ("sqs", "ListDeadLetterSourceQueues"): Rule(response=("QueueUrls",)),
    ("sqs", "AddPermission"): Rule(("Label",)),
    ("lambda", "Invoke"): Rule(("FunctionName", "InvocationType", "LogType", "Qualifier"),
                               ("FunctionError", "StatusCode")),
    ("lambda", "InvokeAsync"): Rule(("FunctionName",), ("Status",)),
    ("s3", "CopyObject"): Rule(("CopySource",), rename={"Bucket": "bucket"}),
}
ENDPOINT_PREFIXES = {
    "cloudwatch": "monitoring",
    "stepfunctions": "states",
    "ses": "email",
    "sesv2": "email",
    "efs": "elasticfilesystem",
    "elb": "elasticloadbalancing",
    "elbv2": "elasticloadbalancing",
    "emr": "elasticmapreduce",
    "opensearch": "es",
    "ecr": "api.ecr",
    "apigatewayv2": "apigateway",
    "apigatewaymanagementapi": "execute-api",
    "dynamodbstreams": "streams.dynamodb",
    "iot-data": "data-ats.iot",
    "resourcegroupstaggingapi": "tagging",
    "sagemaker": "api.sagemaker",
    "sagemaker-runtime": "runtime.sagemaker",
    "kinesisanalyticsv2": "kinesisanalytics",
    "service-quotas": "servicequotas",
    "sso-oidc": "oidc",
    "location": "geo",
}
"""botocore service name -> endpoint prefix (the X-Ray SDK's subsegment name) where they differ.
They are equal for the other commonly used services (dynamodb, sqs, sns, s3, lambda, kinesis,
events, logs, secretsmanager, ssm, sts, kms...); reading the prefix from botocore's model instead
would load a service model per first call (5-50 ms)."""


def instrumentor_options() -> dict[str, Any]:
    """Keyword arguments for ``BotocoreInstrumentor().instrument``."""
    return {"request_hook": request_hook, "response_hook": response_hook, "propagator": TracePropagator()}


@stats.guarded("instrument.botocore.request")
def request_hook(span: Span, service: str, operation: str, params: Mapping[str, Any] | None) -> None:
    if not span.is_recording():
        return
    span.set_attribute("aws.service", ENDPOINT_PREFIXES.get(service, service))
    recorded = request_fields(service, operation, params or {})
    if recorded:
        span.set_attribute(AWS_PARAMS_ATTR, json.dumps(recorded, default=repr))


@stats.guarded("instrument.botocore.response")
def response_hook(span: Span, service: str, operation: str, result: Mapping[str, Any] | None) -> None:
    if not span.is_recording() or not result:
        return
    recorded = response_fields(service, operation, result)
    if recorded:
        attrs = getattr(span, "attributes", None) or {}
        before = json.loads(attrs.get(AWS_PARAMS_ATTR, "{}"))
        span.set_attribute(AWS_PARAMS_ATTR, json.dumps({**before, **recorded}, default=repr))


def request_fields(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The request parameters the X-Ray SDK records for this call."""
    rule = RULES.get((service, operation), _NO_RULE)
    out: dict[str, Any] = {}
    for name in (*COMMON.get(service, ()), *rule.request):
        if name in params:
            out[_field(service, rule, name)] = params[name]
    _summarise(params, rule.request_keys, rule.request_count, out)
    return out


def _field(service: str, rule: Rule, name: str) -> str:
    if name in rule.rename:
        return rule.rename[name]
    return "bucket_name" if (service, name) == ("s3", "Bucket") else snake_case(name)


def response_fields(service: str, operation: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The response fields the X-Ray SDK records (none for an error response, as it does)."""
    out: dict[str, Any] = {}
    headers = (result.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    if headers.get("x-amz-id-2"):
        out["id_2"] = headers["x-amz-id-2"]
    if "Error" in result:
        return out
    rule = RULES.get((service, operation), _NO_RULE)
    out.update({snake_case(name): result[name] for name in rule.response if name in result})
    _summarise(result, {}, rule.response_count, out)
    return out


def _summarise(values: Mapping[str, Any], keys: Mapping[str, str], counts: Mapping[str, str],
               out: dict[str, Any]) -> None:
    for name, target in keys.items():
        if isinstance(values.get(name), Mapping):
            out[target] = list(values[name])
    for name, target in counts.items():
        if isinstance(values.get(name), (list, tuple)):
            out[target] = len(values[name])


_NO_RULE = Rule()
_CAMEL_1 = re.compile(r"(.)([A-Z][a-z]+)")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")


def snake_case(name: str) -> str:
    """``TableName`` -> ``table_name``, ``QueueOwnerAWSAccountId`` -> ``queue_owner_aws_account_id``."""
    return _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name)).lower()


class TracePropagator(XRayPropagator):
    """``X-Amzn-Trace-Id`` on every AWS request (Parent = the call's subsegment), as the X-Ray SDK
    sends it: SQS keeps it as the message's ``AWSTraceHeader``, SNS, Lambda and Step Functions
    continue the trace. A failure is counted; the request goes out without the header."""

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        try:
            super().inject(carrier, context, setter)
        except Exception as exc:
            stats.report("instrument.botocore.inject", exc)
