"""S3 event notifications: a bucket's NotificationConfiguration, the events it selects,
AWS's event records, and their delivery to functions, queues and topics.

A configuration names targets (LambdaFunctionConfigurations, QueueConfigurations,
TopicConfigurations), each with event types (`s3:ObjectCreated:*`,
`s3:ObjectRemoved:Delete`, ...) and an optional key filter (one `prefix` and one `suffix`
rule). S3 refuses a configuration whose targets do not let it deliver (the function's
resource policy, the queue's or topic's policy must allow `s3.amazonaws.com` for the
bucket), or where two configurations of the same event type overlap in their filters.

A change that matches a configuration writes one record per target into the outbox in the
transaction that makes the change (store.py); `Notifier` delivers the outbox in order, one
event per message or invocation, as AWS does, and removes what it delivered. A target that
has gone away or no longer lets S3 in drops the event (S3 does not retry those).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import uuid
from typing import Any, Protocol
from urllib.parse import quote_plus

from lamina.clock import Clock
from lamina.deliveries import Delivery, FunctionInvoker, QueueSender, TopicPublisher
from lamina.errors import AwsError
from lamina.services.s3.errors import invalid_argument
from lamina.services.s3.store import CLAIM_S, ObjectStore
from lamina.tasks import stop_task

log = logging.getLogger("lamina.s3")

SERVICE = "s3.amazonaws.com"
RECHECK_S = 5.0
# Notifications delivered at once. A crash while they are handed over can deliver those of
# the batch in hand twice (S3 delivers at least once); never loses one.
BATCH = 32
EVENT_TYPES = frozenset(
    {
        "s3:ObjectCreated:*",
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectRemoved:*",
        "s3:ObjectRemoved:Delete",
        "s3:ObjectRemoved:DeleteMarkerCreated",
        "s3:ObjectRestore:*",
        "s3:ObjectRestore:Post",
        "s3:ObjectRestore:Completed",
        "s3:ObjectRestore:Delete",
        "s3:ReducedRedundancyLostObject",
        "s3:Replication:*",
        "s3:LifecycleExpiration:*",
        "s3:LifecycleExpiration:Delete",
        "s3:LifecycleExpiration:DeleteMarkerCreated",
        "s3:LifecycleTransition",
        "s3:IntelligentTiering",
        "s3:ObjectTagging:*",
        "s3:ObjectTagging:Put",
        "s3:ObjectTagging:Delete",
        "s3:ObjectAcl:Put",
        "s3:TestEvent",
    }
)
# The `reason` of an EventBridge event, by the change's event name.
REASONS = {
    "ObjectCreated:Put": "PutObject",
    "ObjectCreated:Copy": "CopyObject",
    "ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "ObjectRemoved:Delete": "DeleteObject",
}
# (configuration list, member naming the target ARN, outbox kind)
KINDS = (
    ("LambdaFunctionConfigurations", "LambdaFunctionArn", "lambda"),
    ("QueueConfigurations", "QueueArn", "sqs"),
    ("TopicConfigurations", "TopicArn", "sns"),
)


class EventBus(Protocol):
    """EventBridge's side (services/events/dispatch.py's Dispatcher)."""

    async def put(
        self, account: str, region: str, bus: str, events: list[dict[str, Any]]
    ) -> None: ...


def iso(moment: float) -> str:
    stamp = dt.datetime.fromtimestamp(moment, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


# The configuration ------------------------------------------------------------------------
def _rules(config: dict[str, Any]) -> tuple[str, str]:
    """The (prefix, suffix) of a configuration's key filter ('' when absent)."""
    prefix = suffix = ""
    seen: set[str] = set()
    rules = ((config.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    for rule in rules:
        name = str(rule.get("Name", "")).lower()
        if name not in ("prefix", "suffix"):
            raise invalid_argument(
                "filter rule name must be either prefix or suffix", "FilterRule.Name", name
            )
        if name in seen:
            raise invalid_argument(
                "Cannot specify more than one prefix rule in a filter."
                if name == "prefix"
                else "Cannot specify more than one suffix rule in a filter.",
                "FilterRule.Name",
                name,
            )
        seen.add(name)
        if name == "prefix":
            prefix = str(rule.get("Value", ""))
        else:
            suffix = str(rule.get("Value", ""))
    return prefix, suffix


def _event_family(event: str) -> str:
    """`s3:ObjectCreated:Put` → `s3:ObjectCreated`."""
    return event.rsplit(":", 1)[0] if event.count(":") >= 2 else event


def _events_overlap(a: str, b: str) -> bool:
    if a == b:
        return True
    if a.endswith(":*") and _event_family(b) == a[:-2]:
        return True
    return b.endswith(":*") and _event_family(a) == b[:-2]


def _filters_overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    prefixes = a[0].startswith(b[0]) or b[0].startswith(a[0])
    suffixes = a[1].endswith(b[1]) or b[1].endswith(a[1])
    return prefixes and suffixes


def normalize(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration as stored (every entry with an Id), or InvalidArgument."""
    stored: dict[str, Any] = {}
    seen: list[tuple[str, tuple[str, str]]] = []
    ids: set[str] = set()
    for listing, arn_member, _ in KINDS:
        entries = []
        for entry in config.get(listing) or []:
            events = list(entry.get("Events") or [])
            for event in events:
                if event not in EVENT_TYPES:
                    raise invalid_argument(
                        "The event is not supported for notifications", "Event", event
                    )
            rules = _rules(entry)
            for event in events:
                for other_event, other_rules in seen:
                    if _events_overlap(event, other_event) and _filters_overlap(rules, other_rules):
                        raise invalid_argument(
                            "Configurations overlap. Configurations on the same bucket cannot "
                            "share a common event type.",
                            "Event",
                            event,
                        )
            seen.extend((event, rules) for event in events)
            ident = entry.get("Id") or _new_id()
            if ident in ids:
                raise invalid_argument("Notification Id must be unique", "Id", ident)
            ids.add(ident)
            kept = {"Id": ident, arn_member: str(entry.get(arn_member, "")), "Events": events}
            if entry.get("Filter"):
                kept["Filter"] = entry["Filter"]
            entries.append(kept)
        if entries:
            stored[listing] = entries
    if config.get("EventBridgeConfiguration") is not None:
        stored["EventBridgeConfiguration"] = {}
    return stored


def targets(configuration: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, ARN) of every target a configuration names, each once."""
    found: list[tuple[str, str]] = []
    for listing, arn_member, kind in KINDS:
        for entry in configuration.get(listing, []):
            if (kind, entry[arn_member]) not in found:
                found.append((kind, entry[arn_member]))
    return found


def unable_to_validate(arn: str) -> AwsError:
    return invalid_argument(
        "Unable to validate the following destination configurations",
        arn,
        "Permissions on the destination do not allow S3 to publish notifications from this bucket",
    )


def _new_id() -> str:
    # AWS makes ids like "NmY3NjE5YzQtNWE0Yy00..." (base64 of a UUID's text)
    import base64

    return base64.b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")


def matches(entry: dict[str, Any], event_name: str, key: str) -> bool:
    """Whether a configuration entry selects event `s3:<event_name>` on `key`."""
    full = f"s3:{event_name}"
    if not any(_events_overlap(wanted, full) for wanted in entry.get("Events", [])):
        return False
    prefix, suffix = _rules(entry)
    return key.startswith(prefix) and key.endswith(suffix)


# Records ----------------------------------------------------------------------------------
class Change:
    """One change to an object, as an event record describes it."""

    def __init__(
        self,
        event_name: str,
        bucket: str,
        key: str,
        *,
        region: str,
        owner: str,
        principal: str,
        source_ip: str,
        request_id: str,
        when: float,
        sequencer: str,
        size: int | None = None,
        etag: str | None = None,
    ) -> None:
        self.event_name = event_name
        self.bucket = bucket
        self.key = key
        self.region = region
        self.owner = owner
        self.principal = principal
        self.source_ip = source_ip
        self.request_id = request_id
        self.when = when
        self.sequencer = sequencer
        self.size = size
        self.etag = etag

    def bus_event(self, account: str) -> dict[str, Any]:
        """The event EventBridge gets for the change (a bucket with
        EventBridgeConfiguration sends every change to its account's default bus)."""
        created = self.event_name.startswith("ObjectCreated")
        obj: dict[str, Any] = {"key": self.key}
        if self.size is not None:
            obj["size"] = self.size
        if self.etag is not None:
            obj["etag"] = self.etag
        obj["sequencer"] = self.sequencer
        detail: dict[str, Any] = {
            "version": "0",
            "bucket": {"name": self.bucket},
            "object": obj,
            "request-id": self.request_id,
            "requester": account,
            "source-ip-address": self.source_ip,
            "reason": REASONS.get(self.event_name, self.event_name),
        }
        if not created:
            detail["deletion-type"] = "Permanently Deleted"
        stamp = dt.datetime.fromtimestamp(self.when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created" if created else "Object Deleted",
            "source": "aws.s3",
            "account": account,
            "time": stamp,
            "region": self.region,
            "resources": [f"arn:aws:s3:::{self.bucket}"],
            "detail": detail,
        }

    def record(self, configuration_id: str) -> dict[str, Any]:
        obj: dict[str, Any] = {"key": quote_plus(self.key, safe="/")}
        if self.size is not None:
            obj["size"] = self.size
        if self.etag is not None:
            obj["eTag"] = self.etag
        obj["sequencer"] = self.sequencer
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": self.region,
            "eventTime": iso(self.when),
            "eventName": self.event_name,
            "userIdentity": {"principalId": self.principal},
            "requestParameters": {"sourceIPAddress": self.source_ip},
            "responseElements": {
                "x-amz-request-id": self.request_id,
                "x-amz-id-2": self.request_id,
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": configuration_id,
                "bucket": {
                    "name": self.bucket,
                    "ownerIdentity": {"principalId": self.owner},
                    "arn": f"arn:aws:s3:::{self.bucket}",
                },
                "object": obj,
            },
        }


def outgoing(configuration: dict[str, Any], change: Change, account: str) -> list[dict[str, Any]]:
    """The outbox rows a change makes under a bucket's configuration."""
    rows = []
    for listing, arn_member, kind in KINDS:
        for entry in configuration.get(listing, []):
            if matches(entry, change.event_name, change.key):
                payload = {"Records": [change.record(entry["Id"])]}
                rows.append(
                    {
                        "kind": kind,
                        "arn": entry[arn_member],
                        "payload": json.dumps(payload, separators=(",", ":")),
                        "bucket": change.bucket,
                        "account": account,
                    }
                )
    if "EventBridgeConfiguration" in configuration:
        rows.append(
            {
                "kind": "events",
                "arn": f"arn:aws:events:{change.region}:{account}:event-bus/default",
                "payload": json.dumps(change.bus_event(account), separators=(",", ":")),
                "bucket": change.bucket,
                "account": account,
                "region": change.region,
            }
        )
    return rows


def test_event(bucket: str, request_id: str, when: float) -> str:
    """What S3 sends a queue or topic when a configuration names it."""
    return json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": iso(when),
            "Bucket": bucket,
            "RequestId": request_id,
            "HostId": request_id,
        },
        separators=(",", ":"),
    )


# Delivery ---------------------------------------------------------------------------------
class Notifier:
    """Delivers the outbox: started and stopped with the server."""

    def __init__(
        self,
        store: ObjectStore,
        clock: Clock,
        functions: FunctionInvoker | None,
        queues: QueueSender | None,
        topics: TopicPublisher | None,
        buses: EventBus | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.buses = buses
        self.functions = functions
        self.queues = queues
        self.topics = topics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        store.on_outbox.append(self._wake.set)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _run(self) -> None:
        # Another node's claims expire without a word: with a shared database, look again
        # every few seconds; on a node's own, a write here is the only news.
        idle = RECHECK_S if self.store.shared else None
        failed = False  # a failed delivery is tried again when its claim runs out
        while True:
            self._wake.clear()
            batch = self.store.claim(self.clock.wall(), BATCH)
            if not batch:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
                # arrives as the event is set, and close() would wait for ever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLAIM_S if failed else idle):
                        await self._wake.wait()
                failed = False
                continue
            # A batch's deliveries together: their async events share the queue's commits
            # (S3 promises no order between notifications).
            results = await asyncio.gather(
                *(self._deliver_one(row_id, row) for row_id, row in batch),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    log.error("delivering an S3 notification failed", exc_info=result)
                    failed = True  # still claimed: delivered again once the claim runs out

    async def _deliver_one(self, row_id: int, row: dict[str, Any]) -> None:
        """Deliver one notification and at once forget it: a crash in between delivers it
        twice (at least once, as S3), never not at all."""
        result = await self._deliver(row)
        if result is not Delivery.ACCEPTED:
            log.warning(
                "S3 notification for bucket %s to %s dropped: %s",
                row["bucket"], row["arn"], result.value,
            )  # fmt: skip
        self.store.sent([row_id])
        self.delivered += 1

    async def _deliver(self, row: dict[str, Any]) -> Delivery:
        source, account = f"arn:aws:s3:::{row['bucket']}", row["account"]
        kind, arn, payload = row["kind"], row["arn"], row["payload"]
        if kind == "lambda" and self.functions is not None:
            return await self.functions.invoke_async(
                arn, payload.encode(), service=SERVICE, source_arn=source, source_account=account
            )
        if kind == "sqs" and self.queues is not None:
            return self.queues.send_as_service(
                arn, payload, service=SERVICE, source_arn=source, source_account=account
            )
        if kind == "events" and self.buses is not None:
            await self.buses.put(account, row["region"], "default", [json.loads(payload)])
            return Delivery.ACCEPTED
        if kind == "sns" and self.topics is not None:
            return await self.topics.publish_as_service(
                arn,
                payload,
                subject="Amazon S3 Notification",
                service=SERVICE,
                source_arn=source,
                source_account=account,
            )
        return Delivery.MISSING
