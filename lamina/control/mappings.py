"""Event source mappings, the control side: the Lambda API's Create/Get/List/Update/
DeleteEventSourceMapping, their checks, AWS's fields, defaults and states, and their
persistence. The pollers that carry a mapping out are the engine's (engine/pollers/);
a mapping's function is invoked through `MappingInvoker`, the pollers' view of it.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from lamina.context import RequestContext
from lamina.control.functions import Functions, resolve
from lamina.control.invocations import Invocations
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.pollers.base import FUNCTION_MISSING, NO_RECORDS, function_key
from lamina.engine.pollers.manager import Pollers
from lamina.engine.pollers.sources import QueueSource
from lamina.engine.service import Engine
from lamina.errors import AwsError, conflict, invalid_parameter, not_found
from lamina.keys import FunctionKey
from lamina.patterns import PatternError, compile_pattern
from lamina.store.mappings import MappingStore

LIST_LIMIT = 100
SQS_DEFAULT_BATCH = 10
FIFO_MAX_BATCH = 10
STREAM_DEFAULT_BATCH = 100
MAX_FILTERS = 5
SQS_ARN = re.compile(r"arn:aws[a-zA-Z-]*:sqs:([^:]+):(\d{12}):(.+)")
KINESIS_ARN = re.compile(r"arn:aws[a-zA-Z-]*:kinesis:([^:]+):(\d{12}):stream/(.+)")
DYNAMODB_STREAM_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:dynamodb:([^:]+):(\d{12}):table/[^/]+/stream/.+"
)
UPDATABLE = (
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "FunctionResponseTypes",
    "ScalingConfig",
    "DestinationConfig",
    "MetricsConfig",
)
UNSUPPORTED = {
    "TumblingWindowInSeconds": "Tumbling windows are not supported by Lamina yet.",
    "KMSKeyArn": "Encrypted filter criteria (KMSKeyArn) are not supported by Lamina.",
    "Topics": "Kafka event sources are not supported by Lamina.",
    "Queues": "Amazon MQ event sources are not supported by Lamina.",
    "SourceAccessConfigurations": "Source access configurations are not supported by Lamina.",
    "SelfManagedEventSource": "Self-managed Kafka event sources are not supported by Lamina.",
    "AmazonManagedKafkaEventSourceConfig": "Kafka event sources are not supported by Lamina.",
    "SelfManagedKafkaEventSourceConfig": "Kafka event sources are not supported by Lamina.",
    "DocumentDBEventSourceConfig": "DocumentDB event sources are not supported by Lamina.",
    "ProvisionedPollerConfig": "Provisioned pollers are not supported by Lamina.",
    "LoggingConfig": "Event source mapping logging configuration is not supported by Lamina.",
}
STREAM_ONLY = (
    "ParallelizationFactor",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "DestinationConfig",
    "StartingPosition",
    "StartingPositionTimestamp",
)


def wall_now() -> float:
    return time.time()


class MappingInvoker:
    """A mapping's function, as its poller invokes it (engine/pollers/sources.py's
    MappingTarget)."""

    def __init__(self, functions: Functions, invocations: Invocations, engine: Engine) -> None:
        self.functions = functions
        self.invocations = invocations
        self.engine = engine

    def _ref(self, config: dict[str, Any]) -> tuple[RequestContext, Any]:
        key = function_key(config)
        ctx = RequestContext(key.account, key.region, str(uuid.uuid4()), "")
        return ctx, resolve(ctx, config["FunctionArn"])

    def exists(self, config: dict[str, Any]) -> bool:
        _, ref = self._ref(config)
        try:
            self.functions.record(ref)
        except AwsError:
            return False
        return True

    async def invoke(self, config: dict[str, Any], payload: bytes) -> InvokeResult:
        ctx, ref = self._ref(config)
        record = self.functions.record(ref)
        return await self.engine.invoke(
            ref.key,
            self.invocations.image(ref.key, record),
            InvokeRequest(
                payload=payload, request_id=ctx.request_id, invoked_arn=config["FunctionArn"]
            ),
        )


class Mappings:
    """Every event source mapping: its record, persisted, and the operations on it."""

    def __init__(
        self,
        store: MappingStore,
        functions: Functions,
        pollers: Pollers,
        queues: QueueSource,
    ) -> None:
        self.store = store
        self.functions = functions
        self.pollers = pollers
        self.queues = queues
        self.records: dict[str, dict[str, Any]] = {r["UUID"]: r for r in store.mappings()}
        # Cluster mode: creations, updates and deletions through another node, read again.
        self.announcer = store.announcer(self.reload)

    def reload(self) -> None:
        stored = {r["UUID"]: r for r in self.store.mappings()}
        for uuid_, record in list(self.records.items()):
            if uuid_ not in stored:
                record["State"] = "Deleting"
                self.pollers.apply(record)
                del self.records[uuid_]
        for uuid_, found in stored.items():
            known = self.records.get(uuid_)
            if known is None:
                self.records[uuid_] = found
                self.pollers.apply(found)
            elif found.get("LastModified") != known.get("LastModified"):
                known.clear()
                known.update(found)  # the pollers hold this dict
                self.pollers.apply(known)

    async def start(self) -> None:
        """Resume every enabled mapping (from its checkpoints)."""
        self.pollers.start(self.records.values())

    def forget_function(self, key: FunctionKey) -> None:
        """The function was deleted: its mappings stop polling and stay, disabled, as on
        AWS (where mappings outlive their function until deleted)."""
        for record in self.records.values():
            if function_key(record) == key and record["State"] != "Disabled":
                record["State"] = "Disabled"
                record["StateTransitionReason"] = "USER_INITIATED"
                if "StartingPosition" in record:
                    record["LastProcessingResult"] = FUNCTION_MISSING
                record["LastModified"] = wall_now()
                self.save(record)
                self.pollers.apply(record)

    def save(self, record: dict[str, Any]) -> None:
        if record["UUID"] in self.records:
            self.store.update(record["UUID"], record)

    # Operations -------------------------------------------------------------------------
    def account_of(self, uuid_: str) -> str | None:
        """The account a mapping belongs to (None: no such mapping)."""
        record = self.records.get(uuid_)
        return None if record is None else str(record["_Account"])

    def _mapping(self, uuid_: str) -> dict[str, Any]:
        record = self.records.get(uuid_)
        if record is None:
            raise not_found("The resource you requested does not exist.")
        return record

    @staticmethod
    def _view(record: dict[str, Any], state: str | None = None) -> dict[str, Any]:
        view = {k: v for k, v in record.items() if not k.startswith("_")}
        if state is not None:
            view["State"] = state
        return view

    def _check(self, config: dict[str, Any], params: dict[str, Any], creating: bool) -> None:
        for member, message in UNSUPPORTED.items():
            value = params.get(member)
            if value not in (None, 0, [], {}):
                raise invalid_parameter(message)
        arn = config["EventSourceArn"]
        sqs = _is_sqs(arn)
        if sqs:
            for member in STREAM_ONLY:
                value = params.get(member)
                if member == "DestinationConfig" and value is not None:
                    value = (value.get("OnFailure") or {}).get("Destination")
                if value is not None:
                    raise invalid_parameter(f"{member} is not supported for SQS event sources.")
            queue = self.queues.queue(arn)
            fifo = queue.fifo if queue is not None else arn.endswith(".fifo")
            batch = config["BatchSize"]
            if fifo and batch > FIFO_MAX_BATCH:
                raise invalid_parameter(
                    f"BatchSize must be between 1 and {FIFO_MAX_BATCH} for FIFO queues."
                )
            window = config.get("MaximumBatchingWindowInSeconds") or 0
            if batch > SQS_DEFAULT_BATCH and window < 1:
                raise invalid_parameter(
                    "Maximum batch window in seconds must be greater than 0 if maximum batch "
                    "size is greater than 10"
                )
            if fifo and window:
                raise invalid_parameter("Batching window is not supported for FIFO queues.")
        else:
            if params.get("ScalingConfig"):
                raise invalid_parameter("ScalingConfig is only supported for SQS event sources.")
            dynamodb = DYNAMODB_STREAM_ARN.fullmatch(arn) is not None
            if creating and not params.get("StartingPosition"):
                raise invalid_parameter(
                    "StartingPosition is required for DynamoDB Streams event sources: "
                    "TRIM_HORIZON or LATEST."
                    if dynamodb
                    else "StartingPosition is required for Kinesis event sources: TRIM_HORIZON, "
                    "LATEST or AT_TIMESTAMP."
                )
            if dynamodb and config.get("StartingPosition") == "AT_TIMESTAMP":
                raise invalid_parameter(
                    "Unsupported starting position for DynamoDB Streams: AT_TIMESTAMP."
                )
            if config.get("StartingPosition") == "AT_TIMESTAMP" and not config.get(
                "StartingPositionTimestamp"
            ):
                raise invalid_parameter(
                    "StartingPositionTimestamp must be set for the AT_TIMESTAMP starting position."
                )
            age = config.get("MaximumRecordAgeInSeconds", -1)
            if age is not None and age != -1 and not 60 <= age <= 604_800:
                raise invalid_parameter(
                    f"MaximumRecordAgeInSeconds must be -1 (infinite) or between 60 and 604800; "
                    f"got {age}."
                )
            destination = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                "Destination"
            )
            if destination:
                if not _is_sqs(destination):
                    raise invalid_parameter(
                        "Lamina supports SQS queues as on-failure destinations only."
                    )
                owner = str(config.get("EventSourceArn", "")).split(":")[4:5]
                if destination.split(":")[4:5] != owner:
                    # Walls: a mapping sends its failures to its own account's queues only.
                    raise invalid_parameter(
                        "The function's execution role does not have permissions to call "
                        f"SendMessage on {destination}"
                    )
                if self.queues.queue(destination) is None:
                    raise invalid_parameter(
                        f"The destination {destination} does not exist: create the queue first."
                    )
        if ((config.get("DestinationConfig") or {}).get("OnSuccess") or {}).get("Destination"):
            raise invalid_parameter(
                "OnSuccess destinations are not supported for event source mappings of SQS, "
                "Kinesis or DynamoDB Streams."
            )

    def _function_config(self, ctx: RequestContext, name: str) -> tuple[str, dict[str, Any]]:
        ref = resolve(ctx, name)
        record = self.functions.record(ref)
        arn = ref.key.arn if not ref.qualifier else f"{ref.key.arn}:{ref.qualifier}"
        return arn, record

    async def CreateEventSourceMapping(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        arn = params.get("EventSourceArn") or ""
        if not arn:
            raise invalid_parameter(
                "EventSourceArn is required: Lamina reads SQS queues, Kinesis streams and "
                "DynamoDB streams."
            )
        if not (_is_sqs(arn) or KINESIS_ARN.fullmatch(arn) or DYNAMODB_STREAM_ARN.fullmatch(arn)):
            raise invalid_parameter(
                f"Unsupported event source {arn}: Lamina reads SQS queues, Kinesis data streams "
                "and DynamoDB streams."
            )
        function_arn, function = self._function_config(ctx, params["FunctionName"])
        if (function["config"].get("TenancyConfig") or {}).get("TenantIsolationMode"):
            # Lambda's tenant isolation mode takes invocations that name their tenant: an
            # event source mapping cannot.
            raise invalid_parameter(
                "Event source mappings are not supported for functions with tenant isolation "
                "mode (TenancyConfig) enabled."
            )
        region, account = _arn_region_account(arn)
        if region != ctx.region or account != ctx.account:
            raise invalid_parameter(
                f"The event source {arn} is in another account or region than the function."
            )
        sqs = _is_sqs(arn)
        if sqs and self.queues.queue(arn) is None:
            raise invalid_parameter(
                "Error occurred while ReceiveMessage. SQS Error Code: "
                "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified "
                "queue does not exist for this wsdl version."
            )
        stream = None if sqs else self.pollers.stream(arn)
        if not sqs and stream is None:
            raise invalid_parameter(f"Stream not found: {arn}")
        mapping_id = str(uuid.uuid4())
        enabled = params.get("Enabled", True)
        config: dict[str, Any] = {"UUID": mapping_id}
        if not sqs:
            config["StartingPosition"] = params.get("StartingPosition")
            if params.get("StartingPositionTimestamp") is not None:
                config["StartingPositionTimestamp"] = params[
                    "StartingPositionTimestamp"
                ].timestamp()
        config["BatchSize"] = params.get("BatchSize") or (
            SQS_DEFAULT_BATCH if sqs else STREAM_DEFAULT_BATCH
        )
        config["MaximumBatchingWindowInSeconds"] = params.get("MaximumBatchingWindowInSeconds") or 0
        if not sqs:
            config["ParallelizationFactor"] = params.get("ParallelizationFactor") or 1
        config["EventSourceArn"] = arn
        config["FunctionArn"] = function_arn
        config["LastModified"] = wall_now()
        if not sqs:
            config["LastProcessingResult"] = NO_RECORDS
        config["State"] = "Enabled" if enabled else "Disabled"
        config["StateTransitionReason"] = "USER_INITIATED"
        if not sqs:
            config["DestinationConfig"] = _destination(params.get("DestinationConfig"))
            config["MaximumRecordAgeInSeconds"] = params.get("MaximumRecordAgeInSeconds", -1)
            config["BisectBatchOnFunctionError"] = bool(params.get("BisectBatchOnFunctionError"))
            config["MaximumRetryAttempts"] = params.get("MaximumRetryAttempts", -1)
            config["TumblingWindowInSeconds"] = 0
        config["FunctionResponseTypes"] = list(params.get("FunctionResponseTypes") or [])
        filters = filter_criteria(params.get("FilterCriteria"))
        if filters is not None:
            config["FilterCriteria"] = filters
        if params.get("ScalingConfig"):
            config["ScalingConfig"] = dict(params["ScalingConfig"])
        if params.get("MetricsConfig"):
            config["MetricsConfig"] = dict(params["MetricsConfig"])
        config["EventSourceMappingArn"] = (
            f"arn:aws:lambda:{ctx.region}:{ctx.account}:event-source-mapping:{mapping_id}"
        )
        config["_Role"] = function["config"].get("Role", "")
        config["_Account"] = ctx.account
        config["_Region"] = ctx.region
        self._check(config, params, creating=True)
        for other in self.records.values():
            if other["EventSourceArn"] == arn and other["FunctionArn"] == function_arn:
                label = "SQS" if sqs else "Kinesis" if KINESIS_ARN.fullmatch(arn) else "DynamoDB"
                raise conflict(
                    f'An event source mapping with {label} arn (" {arn} ") and function '
                    f'(" {function["config"]["FunctionName"]} ") already exists. Please update '
                    f"or delete the existing mapping with UUID {other['UUID']}"
                )
        if stream is not None:
            self.pollers.fix_start(mapping_id, config)
        self.store.insert(mapping_id, config)
        self.records[mapping_id] = config
        self.pollers.apply(config)
        self.announcer.written()
        return self._view(config, "Creating")

    async def GetEventSourceMapping(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = self._mapping(params["UUID"])
        if record["_Account"] != ctx.account or record["_Region"] != ctx.region:
            raise not_found("The resource you requested does not exist.")
        return self._view(record)

    async def ListEventSourceMappings(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        source = params.get("EventSourceArn")
        function_arn = None
        if params.get("FunctionName"):
            ref = resolve(ctx, params["FunctionName"])
            function_arn = ref.key.arn if not ref.qualifier else f"{ref.key.arn}:{ref.qualifier}"
        chosen = [
            r
            for r in self.records.values()
            if r["_Account"] == ctx.account
            and r["_Region"] == ctx.region
            and (source is None or r["EventSourceArn"] == source)
            and (function_arn is None or r["FunctionArn"] == function_arn)
        ]
        start = 0
        marker = params.get("Marker")
        if marker:
            ids = [r["UUID"] for r in chosen]
            if marker not in ids:
                raise invalid_parameter(f"Invalid Marker: {marker}")
            start = ids.index(marker) + 1
        limit = params.get("MaxItems") or LIST_LIMIT
        page = chosen[start : start + limit]
        result: dict[str, Any] = {"EventSourceMappings": [self._view(r) for r in page]}
        if start + limit < len(chosen):
            result["NextMarker"] = page[-1]["UUID"]
        return result

    async def UpdateEventSourceMapping(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = self._mapping(params["UUID"])
        if record["_Account"] != ctx.account or record["_Region"] != ctx.region:
            raise not_found("The resource you requested does not exist.")
        config = {**record}
        if params.get("FunctionName"):
            function_arn, function = self._function_config(ctx, params["FunctionName"])
            config["FunctionArn"] = function_arn
            config["_Role"] = function["config"].get("Role", "")
        for member in UPDATABLE:
            if member in params:
                value = params[member]
                if member == "DestinationConfig":
                    value = _destination(value)
                config[member] = value
        if "Enabled" in params:
            config["State"] = "Enabled" if params["Enabled"] else "Disabled"
        if "FilterCriteria" in params:
            filters = filter_criteria(params["FilterCriteria"])
            if filters is None:
                config.pop("FilterCriteria", None)
            else:
                config["FilterCriteria"] = filters
        self._check(config, params, creating=False)
        if _is_sqs(config["EventSourceArn"]):
            for member in STREAM_ONLY:
                config.pop(member, None)
        restart = config.get("ParallelizationFactor") != record.get("ParallelizationFactor")
        config["LastModified"] = wall_now()
        config["StateTransitionReason"] = "USER_INITIATED"
        record.clear()
        record.update(config)  # pollers hold this dict: they see the change at once
        self.save(record)
        self.pollers.apply(record, restart=restart)
        self.announcer.written()
        return self._view(record, "Updating")

    async def DeleteEventSourceMapping(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = self._mapping(params["UUID"])
        if record["_Account"] != ctx.account or record["_Region"] != ctx.region:
            raise not_found("The resource you requested does not exist.")
        record["State"] = "Deleting"
        self.pollers.apply(record)
        del self.records[record["UUID"]]
        self.store.delete(record["UUID"])
        self.announcer.written()
        return self._view(record)


def filter_criteria(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """FilterCriteria as stored, each pattern checked; None when there is no filter."""
    filters = list((value or {}).get("Filters") or [])
    if not filters:
        return None
    if len(filters) > MAX_FILTERS:
        raise invalid_parameter(
            f"The number of filters ({len(filters)}) exceeds the limit of {MAX_FILTERS} per "
            "event source mapping."
        )
    for item in filters:
        try:
            compile_pattern(item.get("Pattern") or "")
        except PatternError:
            raise invalid_parameter("Invalid filter pattern definition.") from None
    return {"Filters": [{"Pattern": item.get("Pattern") or ""} for item in filters]}


def _is_sqs(arn: str) -> bool:
    return SQS_ARN.fullmatch(arn) is not None


def _arn_region_account(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    return parts[3], parts[4]


def _destination(value: dict[str, Any] | None) -> dict[str, Any]:
    on_failure = dict((value or {}).get("OnFailure") or {})
    return {"OnFailure": on_failure} if on_failure.get("Destination") else {"OnFailure": {}}
