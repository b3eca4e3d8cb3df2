"""What SNS publishes and delivers: checks of a published message and its attributes,
filter policies, and the shapes AWS delivers (the Lambda event record, the JSON
notification SQS and HTTP endpoints receive, the HTTP headers).

A published message is kept as a plain dict (it is stored in the outbox as JSON):
`id`, `topic_arn`, `message` (text, or one text per protocol for MessageStructure json),
`subject`, `attributes` (AWS's MessageAttributes, binary values base64), `timestamp`,
`endpoint` (the address the publisher used, for the URLs in the notification) and, on
FIFO topics, `group`, `dedup` and `sequence`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import quote

from lamina.errors import AwsError
from lamina.patterns import SNS, Pattern, PatternError, compile_pattern

MESSAGE_LIMIT = 262_144  # bytes: the message and its attributes
MAX_ATTRIBUTES = 10
TYPE_PREFIXES = ("String", "Number", "Binary")
MAX_POLICY_KEYS = 5  # attribute names (or leaf keys) a filter policy may test
SIGNATURE_VERSION = "1"


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", f"Invalid parameter: {message}", 400)


def invalid_value(message: str) -> AwsError:
    return AwsError("InvalidParameterValueException", message, 400)


def not_found(message: str) -> AwsError:
    return AwsError("NotFoundException", message, 404)


def authorization_error(message: str) -> AwsError:
    return AwsError("AuthorizationErrorException", message, 403)


# Published messages ---------------------------------------------------------------------------
def check_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The message attributes as stored (binary values as base64 text), or AWS's error."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise invalid_value(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}]."
        )
    out: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        kind = str(value.get("DataType") or "")
        if not kind.startswith(TYPE_PREFIXES):
            raise invalid_value(
                f"The message attribute '{name}' has an invalid message attribute type, the "
                "set of supported type prefixes is Binary, Number, and String."
            )
        if kind.startswith("Binary"):
            blob = value.get("BinaryValue")
            if blob is None:
                raise invalid_value(
                    f"The message attribute '{name}' must contain non-empty message attribute "
                    f"value for message attribute type '{kind}'."
                )
            raw = blob if isinstance(blob, bytes) else str(blob).encode()
            out[name] = {"DataType": kind, "BinaryValue": base64.b64encode(raw).decode()}
            continue
        text = value.get("StringValue")
        if text is None or text == "":
            raise invalid_value(
                f"The message attribute '{name}' must contain non-empty message attribute "
                f"value for message attribute type '{kind.split('.')[0]}'."
            )
        if kind.startswith("Number"):
            try:
                float(text)
            except ValueError:
                raise invalid_value(
                    f"Could not cast message attribute '{name}' value to number."
                ) from None
        if kind == "String.Array":
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if not isinstance(parsed, list):
                raise invalid_value(
                    f"The message attribute '{name}' with type 'String.Array' has to be a "
                    "valid JSON array."
                )
        out[name] = {"DataType": kind, "StringValue": str(text)}
    return out


def attributes_size(attributes: dict[str, dict[str, Any]]) -> int:
    size = 0
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode())
        if "BinaryValue" in value:
            size += len(base64.b64decode(value["BinaryValue"]))
        else:
            size += len(value["StringValue"].encode())
    return size


def check_message(
    message: str | None, structure: str | None, attributes: dict[str, dict[str, Any]]
) -> str | dict[str, str]:
    """The message to deliver: its text, or (MessageStructure json) its text per protocol."""
    if message is None or message == "":
        raise invalid("Empty message")
    if len(message.encode()) + attributes_size(attributes) > MESSAGE_LIMIT:
        raise invalid("Message too long")
    if structure is None:
        return message
    if structure != "json":
        raise invalid("MessageStructure")
    try:
        parsed = json.loads(message)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise invalid("Message Structure - JSON message body failed to parse")
    if "default" not in parsed:
        raise invalid("Message Structure - No default entry in JSON message body")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}


def text_for(message: dict[str, Any], protocol: str) -> str:
    body = message["message"]
    if isinstance(body, dict):
        return str(body.get(protocol, body["default"]))
    return str(body)


def content_dedup_id(message: str) -> str:
    return hashlib.sha256(message.encode()).hexdigest()


# Filter policies ------------------------------------------------------------------------------
def compile_filter(text: str, scope: str) -> Pattern:
    """A subscription's FilterPolicy, checked as AWS checks it: the pattern syntax of
    lamina/patterns.py; on message attributes, one level of keys only."""
    try:
        json.loads(text)
    except ValueError:
        raise invalid("FilterPolicy: failed to parse JSON.") from None
    try:
        pattern = compile_pattern(text, SNS)
    except PatternError as exc:
        raise invalid(f"FilterPolicy: {exc}") from None
    if scope == "MessageAttributes":
        for key, value in pattern.source.items():
            if key != "$or" and isinstance(value, dict):
                raise invalid(
                    "Filter policy scope MessageAttributes does not support nested filter policy"
                )
    if _leaf_keys(pattern.source) > MAX_POLICY_KEYS:
        raise invalid("FilterPolicy: Filter policy can not have more than 5 keys")
    return pattern


def _leaf_keys(source: dict[str, Any]) -> int:
    count = 0
    for key, value in source.items():
        if key == "$or":
            count = max(count, max(_leaf_keys(branch) for branch in value))
        elif isinstance(value, dict):
            count += _leaf_keys(value)
        else:
            count += 1
    return count


def attribute_view(attributes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The message attributes as a filter policy sees them: strings, numbers, and the
    elements of a String.Array (binary attributes are not matched)."""
    view: dict[str, Any] = {}
    for name, value in attributes.items():
        kind = value["DataType"]
        if kind.startswith("Binary"):
            continue
        text = value["StringValue"]
        if kind.startswith("Number"):
            number = float(text)
            view[name] = int(number) if number.is_integer() else number
        elif kind == "String.Array":
            view[name] = json.loads(text)
        else:
            view[name] = text
    return view


def matches(pattern: Pattern | None, scope: str, message: dict[str, Any], protocol: str) -> bool:
    if pattern is None:
        return True
    if scope == "MessageBody":
        try:
            body = json.loads(text_for(message, protocol))
        except ValueError:
            return False
        return isinstance(body, dict) and pattern.matches(body)
    return pattern.matches(attribute_view(message["attributes"]))


# What is delivered ----------------------------------------------------------------------------
def _signature(fields: dict[str, Any]) -> str:
    """A digest of the fields AWS signs. Lamina holds no AWS signing key: this marks the
    message as coming from Lamina; it cannot be verified against AWS's certificate."""
    text = "".join(f"{k}\n{v}\n" for k, v in sorted(fields.items()) if v is not None)
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _urls(message: dict[str, Any], subscription_arn: str) -> tuple[str, str]:
    endpoint = message.get("endpoint") or "http://127.0.0.1:9700"
    cert = f"{endpoint}/_lamina/sns/SimpleNotificationService.pem"
    unsubscribe = (
        f"{endpoint}/?Action=Unsubscribe&Version=2010-03-31"
        f"&SubscriptionArn={quote(subscription_arn, safe='')}"
    )
    return cert, unsubscribe


def shown_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        name: {"Type": v["DataType"], "Value": v.get("StringValue", v.get("BinaryValue", ""))}
        for name, v in attributes.items()
    }


def notification(message: dict[str, Any], subscription_arn: str, protocol: str) -> dict[str, Any]:
    """The JSON notification an SQS queue or an HTTP endpoint receives."""
    text = text_for(message, protocol)
    out: dict[str, Any] = {"Type": "Notification", "MessageId": message["id"]}
    if message.get("sequence"):
        out["SequenceNumber"] = message["sequence"]
    out["TopicArn"] = message["topic_arn"]
    if message.get("subject") is not None:
        out["Subject"] = message["subject"]
    out["Message"] = text
    out["Timestamp"] = message["timestamp"]
    if not message.get("sequence"):  # FIFO notifications are not signed
        cert, unsubscribe = _urls(message, subscription_arn)
        out["SignatureVersion"] = SIGNATURE_VERSION
        out["Signature"] = _signature(out)
        out["SigningCertURL"] = cert
        out["UnsubscribeURL"] = unsubscribe
    else:
        out["UnsubscribeURL"] = _urls(message, subscription_arn)[1]
    if message["attributes"]:
        out["MessageAttributes"] = shown_attributes(message["attributes"])
    return out


def lambda_event(message: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """AWS's SNS event record, as a function subscribed to a topic receives it."""
    text = text_for(message, "lambda")
    sns: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message["id"],
        "TopicArn": message["topic_arn"],
        "Subject": message.get("subject"),
        "Message": text,
        "Timestamp": message["timestamp"],
    }
    cert, unsubscribe = _urls(message, subscription_arn)
    sns["SignatureVersion"] = SIGNATURE_VERSION
    sns["Signature"] = _signature(sns)
    sns["SigningCertUrl"] = cert
    sns["UnsubscribeUrl"] = unsubscribe
    sns["MessageAttributes"] = shown_attributes(message["attributes"])
    record = {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": sns,
    }
    return {"Records": [record]}


def sqs_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Message attributes as raw delivery hands them to SQS."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        if "BinaryValue" in value:
            out[name] = {
                "DataType": value["DataType"],
                "BinaryValue": base64.b64decode(value["BinaryValue"]),
            }
        else:
            out[name] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
    return out


def confirmation(
    kind: str, message_id: str, topic_arn: str, token: str, endpoint: str, timestamp: str
) -> dict[str, Any]:
    """SubscriptionConfirmation / UnsubscribeConfirmation, as an HTTP endpoint gets it."""
    url = (
        f"{endpoint}/?Action=ConfirmSubscription&Version=2010-03-31"
        f"&TopicArn={quote(topic_arn, safe='')}&Token={token}"
    )
    if kind == "SubscriptionConfirmation":
        text = (
            f"You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the "
            "subscription, visit the SubscribeURL included in this message."
        )
    else:
        text = (
            f"You have chosen to deactivate subscription {topic_arn}.\nTo cancel this "
            "operation and restore the subscription, visit the SubscribeURL included in "
            "this message."
        )
    out: dict[str, Any] = {
        "Type": kind,
        "MessageId": message_id,
        "Token": token,
        "TopicArn": topic_arn,
        "Message": text,
        "SubscribeURL": url,
        "Timestamp": timestamp,
        "SignatureVersion": SIGNATURE_VERSION,
    }
    out["Signature"] = _signature(out)
    out["SigningCertURL"] = f"{endpoint}/_lamina/sns/SimpleNotificationService.pem"
    return out
