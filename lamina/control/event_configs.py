"""Asynchronous invocation, the control side: event-invoke configs and outcome delivery.

Put / Get / Update / Delete / ListFunctionEventInvokeConfig(s) store a config per
qualifier in the function's record. The engine's AsyncQueue asks `resolve` what to run
for an event and hands `finish` each outcome: the record goes to the OnSuccess /
OnFailure destination (a Lamina SQS queue, function, SNS topic or EventBridge bus) and,
on failure, the event to the function's dead-letter queue (a queue or a topic).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from typing import Any, Protocol

from lamina.context import RequestContext
from lamina.control.functions import LATEST, FunctionRef, Functions, page, resolve
from lamina.control.invocations import weighted_version
from lamina.engine.async_queue import AsyncEvent, AsyncQueue, Condition, Delivery
from lamina.engine.invoker import InvokeResult
from lamina.errors import invalid_parameter, not_found
from lamina.keys import FunctionKey

log = logging.getLogger("lamina.async")

DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE = 21600
SQS_ARN = re.compile(r"arn:aws[a-zA-Z-]*:sqs:([a-z0-9-]+):(\d{12}):(.+)")
SNS_ARN = re.compile(r"arn:aws[a-zA-Z-]*:sns:([a-z0-9-]+):(\d{12}):(.+)")
BUS_ARN = re.compile(r"arn:aws[a-zA-Z-]*:events:([a-z0-9-]+):(\d{12}):event-bus/(.+)")
LAMBDA_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):(\d{12}):function:([^:]+)(?::(.+))?"
)


class QueueSender(Protocol):
    """The SQS side of Lamina, as destinations need it."""

    def send_internal(self, arn: str, body: str) -> str | None: ...

    def queue_by_arn(self, arn: str) -> object | None: ...

    def may_send(self, arn: str, account: str, principal: str) -> bool: ...


class TopicSender(Protocol):
    """SNS, as destinations and dead-letter topics need it (services/sns Publisher)."""

    def may_publish(self, arn: str, account: str, principal: str) -> bool: ...

    async def publish_internal(self, arn: str, message: str) -> bool: ...


class BusSender(Protocol):
    """EventBridge, as destinations need it (services/events Dispatcher)."""

    def bus_exists(self, arn: str) -> bool: ...

    async def put_internal(
        self, arn: str, source: str, detail_type: str, detail: Any, resources: list[str]
    ) -> bool: ...


class DeliveryRecorder(Protocol):
    """Delivery failures, for metrics (observe.metrics.Metrics has these)."""

    def dead_letter_error(self, key: FunctionKey, qualifier: str | None = None) -> None: ...

    def destination_delivery_failure(
        self, key: FunctionKey, qualifier: str | None = None
    ) -> None: ...


def iso_now() -> str:
    moment = dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json_or_text(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data.decode("utf-8", "replace")


class EventInvokeConfigs:
    def __init__(
        self,
        functions: Functions,
        queue: AsyncQueue,
        sqs: QueueSender,
        recorder: DeliveryRecorder | None = None,
        sns: TopicSender | None = None,
        buses: BusSender | None = None,
    ) -> None:
        self.functions = functions
        self.queue = queue
        self.sqs = sqs  # destinations and dead-letter queues
        self.recorder = recorder
        self.sns = sns  # destinations and dead-letter topics
        self.buses = buses  # destinations

    async def start(self) -> None:
        self.queue.start(self.resolve, self.finish)

    # Operations --------------------------------------------------------------------------
    def _target(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[FunctionRef, str]:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        self.functions.target(ref)  # the function and its qualifier must exist
        return ref, ref.qualifier or LATEST

    def _check_destination(self, ctx: RequestContext, arn: str, role: str) -> None:
        if SQS_ARN.fullmatch(arn):
            if not self.sqs.may_send(arn, ctx.account, role):
                if SQS_ARN.fullmatch(arn).group(2) != ctx.account:  # type: ignore[union-attr]
                    # Another account's queue whose policy does not let the role send.
                    raise invalid_parameter(
                        "The function's execution role does not have permissions to call "
                        f"SendMessage on {arn}"
                    )
                raise invalid_parameter(
                    f"The destination {arn} is not a queue Lamina serves: create it first."
                )
            return
        found = LAMBDA_ARN.fullmatch(arn)
        if found:
            self.functions.record(resolve(ctx, arn))
            return
        topic = SNS_ARN.fullmatch(arn)
        if topic and self.sns is not None:
            if not self.sns.may_publish(arn, ctx.account, role):
                if topic.group(2) != ctx.account:
                    raise invalid_parameter(
                        "The function's execution role does not have permissions to call "
                        f"Publish on {arn}"
                    )
                raise invalid_parameter(
                    f"The destination {arn} is not a topic Lamina serves: create it first."
                )
            return
        if BUS_ARN.fullmatch(arn) and self.buses is not None:
            if not self.buses.bus_exists(arn):
                raise invalid_parameter(
                    f"The destination {arn} is not an event bus Lamina serves: create it first."
                )
            return
        raise invalid_parameter(
            f"The destination {arn} is not supported by Lamina: use an SQS queue, a Lambda "
            "function, an SNS topic or an EventBridge event bus that Lamina serves."
        )

    def _shown(self, key: FunctionKey, qualifier: str, config: dict[str, Any]) -> dict[str, Any]:
        return {"FunctionArn": f"{key.arn}:{qualifier}", **config}

    def _store(self, ctx: RequestContext, params: dict[str, Any], merge: bool) -> dict[str, Any]:
        ref, qualifier = self._target(ctx, params)
        record = self.functions.record(FunctionRef(ref.key, None))
        configs = record.setdefault("event_configs", {})
        if merge and qualifier not in configs:
            raise self._missing(ref.key, qualifier)
        if not merge and not any(
            member in params
            for member in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
        ):
            raise invalid_parameter(
                "You must specify at least one of error handling or destination setting."
            )
        config: dict[str, Any] = dict(configs.get(qualifier, {})) if merge else {}
        for member in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if member in params:
                config[member] = params[member]
        destinations = params.get("DestinationConfig")
        if destinations is not None:
            shown: dict[str, Any] = dict(config.get("DestinationConfig", {})) if merge else {}
            for side in ("OnSuccess", "OnFailure"):
                if side in destinations:
                    arn = (destinations[side] or {}).get("Destination")
                    if arn:
                        self._check_destination(ctx, arn, record["config"].get("Role", ""))
                        shown[side] = {"Destination": arn}
                    else:
                        shown[side] = {}
            config["DestinationConfig"] = shown
        config.setdefault("DestinationConfig", {"OnSuccess": {}, "OnFailure": {}})
        for side in ("OnSuccess", "OnFailure"):
            config["DestinationConfig"].setdefault(side, {})
        config["LastModified"] = time.time()
        configs[qualifier] = config
        self.functions.store.update_function(ref.key, record)
        return self._shown(ref.key, qualifier, config)

    @staticmethod
    def _missing(key: FunctionKey, qualifier: str) -> Exception:
        return not_found(f"The function {key.arn}:{qualifier} doesn't have an EventInvokeConfig")

    async def PutFunctionEventInvokeConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return self._store(ctx, params, merge=False)

    async def UpdateFunctionEventInvokeConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return self._store(ctx, params, merge=True)

    async def GetFunctionEventInvokeConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref, qualifier = self._target(ctx, params)
        record = self.functions.record(FunctionRef(ref.key, None))
        config = record.get("event_configs", {}).get(qualifier)
        if config is None:
            raise self._missing(ref.key, qualifier)
        return self._shown(ref.key, qualifier, config)

    async def DeleteFunctionEventInvokeConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref, qualifier = self._target(ctx, params)
        record = self.functions.record(FunctionRef(ref.key, None))
        if record.get("event_configs", {}).pop(qualifier, None) is None:
            raise self._missing(ref.key, qualifier)
        self.functions.store.update_function(ref.key, record)
        return {}

    async def ListFunctionEventInvokeConfigs(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        record = self.functions.record(ref)
        shown = [
            self._shown(ref.key, q, c) for q, c in sorted(record.get("event_configs", {}).items())
        ]
        chunk, marker = page(shown, params.get("Marker"), params.get("MaxItems"))
        result: dict[str, Any] = {"FunctionEventInvokeConfigs": chunk}
        if marker:
            result["NextMarker"] = marker
        return result

    # The queue's questions -----------------------------------------------------------
    def _config_of(self, event: AsyncEvent) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The function record and the event-invoke config that applies to `event`."""
        record = self.functions.store.function_view(event.key)
        if record is None:
            return None
        qualifier = event.stored.qualifier or LATEST
        return record, record.get("event_configs", {}).get(qualifier, {})

    def resolve(self, event: AsyncEvent) -> Delivery | None:
        found = self._config_of(event)
        if found is None:
            return None
        record, config = found
        qualifier = event.stored.qualifier or None
        try:
            target = self.functions.target(FunctionRef(event.key, qualifier))
        except Exception:
            return None  # its version or alias was deleted
        if target.alias is not None:
            target = self.functions.target(
                FunctionRef(event.key, weighted_version(record, target.alias))
            )
        return Delivery(
            image=self.functions.image(event.key, target.view),
            provisioned_for=qualifier if target.version != LATEST else None,
            invoked_arn=f"{event.key.arn}:{qualifier}" if qualifier else event.key.arn,
            max_retries=config.get("MaximumRetryAttempts", DEFAULT_RETRIES),
            max_age=float(config.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE)),
        )

    async def finish(self, event: AsyncEvent, condition: str, result: InvokeResult | None) -> None:
        found = self._config_of(event)
        if found is None:
            return
        record, config = found
        destinations = config.get("DestinationConfig", {})
        side = "OnSuccess" if condition == Condition.SUCCESS else "OnFailure"
        target = (destinations.get(side) or {}).get("Destination")
        qualifier = event.stored.qualifier or None
        role = record["config"].get("Role", "")
        if target:
            shown = self._record(event, condition, result)
            if BUS_ARN.fullmatch(target):
                delivered = await self._to_bus(target, shown, side == "OnSuccess")
            else:
                delivered = await self._deliver(target, json.dumps(shown), event.key, role)
            if not delivered and self.recorder:
                self.recorder.destination_delivery_failure(event.key, qualifier)
        if condition != Condition.SUCCESS:
            dead_letter = (record["config"].get("DeadLetterConfig") or {}).get("TargetArn")
            if dead_letter:
                payload = self.queue.store.payload_of(event.stored).decode("utf-8", "replace")
                delivered = await self._deliver(dead_letter, payload, event.key, role)
                if not delivered and self.recorder is not None:
                    self.recorder.dead_letter_error(event.key, qualifier)

    def _record(
        self, event: AsyncEvent, condition: str, result: InvokeResult | None
    ) -> dict[str, Any]:
        """AWS's destination record."""
        qualifier = event.stored.qualifier or LATEST
        shown: dict[str, Any] = {
            "version": "1.0",
            "timestamp": iso_now(),
            "requestContext": {
                "requestId": event.stored.request_id,
                "functionArn": f"{event.key.arn}:{qualifier}",
                "condition": condition,
                "approximateInvokeCount": event.invocations,
            },
            "requestPayload": _json_or_text(self.queue.store.payload_of(event.stored)),
        }
        if result is not None:
            context: dict[str, Any] = {
                "statusCode": 200,
                "executedVersion": result.executed_version,
            }
            if result.function_error:
                context["functionError"] = result.function_error
            shown["responseContext"] = context
            shown["responsePayload"] = _json_or_text(result.payload)
        return shown

    async def _to_bus(self, arn: str, record: dict[str, Any], success: bool) -> bool:
        """AWS's event for a destination bus: source `lambda`, the record as its detail."""
        if self.buses is None:
            return False
        kind = "Success" if success else "Failure"
        return await self.buses.put_internal(
            arn,
            "lambda",
            f"Lambda Function Invocation Result - {kind}",
            record,
            [record["requestContext"]["functionArn"]],
        )

    async def _deliver(self, arn: str, body: str, sender: FunctionKey, role: str) -> bool:
        """Send `body` to a queue or a function; False if it could not be delivered (a
        queue of another account takes it only if its policy lets the function's role
        send)."""
        if SQS_ARN.fullmatch(arn):
            if not self.sqs.may_send(arn, sender.account, role):
                log.warning("could not deliver to %s: no such queue, or no permission", arn)
                return False
            if self.sqs.send_internal(arn, body) is None:
                log.warning("could not deliver to %s: no such queue", arn)
                return False
            return True
        found = LAMBDA_ARN.fullmatch(arn)
        if found:
            region, account, name, qualifier = found.groups()
            key = FunctionKey(account, region, name)
            if self.functions.store.function_view(key) is None:
                log.warning("could not deliver to %s: no such function", arn)
                return False
            await self.queue.submit(key, qualifier or "", str(uuid.uuid4()), body.encode())
            return True
        if SNS_ARN.fullmatch(arn) and self.sns is not None:
            if not self.sns.may_publish(arn, sender.account, role):
                log.warning("could not deliver to %s: no such topic, or no permission", arn)
                return False
            return await self.sns.publish_internal(arn, body)
        log.warning("could not deliver to %s: not a destination Lamina serves", arn)
        return False
