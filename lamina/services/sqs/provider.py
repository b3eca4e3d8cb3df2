"""The SQS operations (botocore's `sqs` model, json 1.0), over the queues of queues.py.

Requests are checked here (attributes.py has the checks); every change of state is
made by `Queues`, which writes it through to the store before the answer.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.services.sqs.access import (
    access_denied,
    add_permission,
    check_policy,
    permitted,
    remove_permission,
)
from lamina.services.sqs.attributes import (
    COMPUTED,
    DEFAULTS,
    FIFO_DEFAULTS,
    FIFO_NAME,
    FIFO_ONLY,
    FREE_TEXT,
    MAX_VISIBILITY,
    NAME,
    SETTABLE,
    check_attributes,
    check_send,
)
from lamina.services.sqs.messages import (
    Claim,
    Message,
    attributes_size,
    invalid_value,
    md5_of_attributes,
    no_queue,
    parameter_error,
    sqs_error,
    system_attributes,
    wanted,
)
from lamina.services.sqs.queue import Queue, ReceiveOptions
from lamina.services.sqs.queues import BATCH_LIMIT, Queues

BATCH_ID = re.compile(r"[a-zA-Z0-9_-]{1,80}")
PURGE_COOLDOWN = 60.0
RECREATE_COOLDOWN = 60.0


class SqsProvider:
    """The SQS operations the gateway dispatches to."""

    def __init__(self, queues: Queues, clock: Clock) -> None:
        self.queues = queues
        self.clock = clock

    def _from_url(self, ctx: RequestContext, url: str, operation: str) -> Queue:
        """The queue a QueueUrl names, if the caller may perform `operation` on it: its
        own, or another account's whose policy lets the caller in (access.py)."""
        parts = url.rstrip("/").split("/")
        if len(parts) < 2:
            raise no_queue()
        account, name = parts[-2], parts[-1]
        if not account.isdigit():  # a bare name or path, as some clients send
            account = ctx.account
        queue = self.queues.find((account, ctx.region, name))
        if account != ctx.account and (queue is None or not permitted(queue, ctx, operation)):
            raise access_denied(f"{ctx.endpoint}/{account}/{name}")
        if queue is None:
            raise no_queue()
        return queue

    @staticmethod
    def _sent(message: Message) -> dict[str, Any]:
        result: dict[str, Any] = {"MessageId": message.id, "MD5OfMessageBody": message.md5_body}
        if message.md5_attributes:
            result["MD5OfMessageAttributes"] = message.md5_attributes
        if message.system:
            result["MD5OfMessageSystemAttributes"] = md5_of_attributes(message.system)
        if message.sequence:
            result["SequenceNumber"] = message.sequence
        return result

    def _send_one(self, queue: Queue, params: dict[str, Any]) -> dict[str, Any]:
        body = params.get("MessageBody")
        if body is None:
            raise sqs_error(
                "MissingParameter", "The request must contain the parameter MessageBody."
            )
        attributes = dict(params.get("MessageAttributes") or {})
        system = dict(params.get("MessageSystemAttributes") or {})
        for name in system:
            if name != "AWSTraceHeader":
                raise invalid_value(f"Message system attribute name '{name}' is invalid.")
        group, dedup = check_send(
            queue,
            body,
            attributes,
            params.get("DelaySeconds"),
            params.get("MessageGroupId"),
            params.get("MessageDeduplicationId"),
        )
        if not queue.fifo and params.get("MessageGroupId"):
            group = None  # standard queues accept and ignore a group id (fair queues)
        message, _ = self.queues.enqueue(
            queue, body, attributes, system, params.get("DelaySeconds"), group, dedup
        )
        return self._sent(message)

    async def CreateQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["QueueName"]
        given = dict(params.get("Attributes") or {})
        fifo = given.get("FifoQueue", "false").lower() == "true"
        if fifo and not FIFO_NAME.fullmatch(name):
            raise invalid_value(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or "
                "underscores, must end with .fifo suffix and be 1 to 80 in length."
            )
        if not fifo and not NAME.fullmatch(name):
            if name.endswith(".fifo") and NAME.fullmatch(name[:-5]):
                raise invalid_value(
                    "The name of a FIFO queue can only include alphanumeric characters, "
                    "hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in "
                    "length. Set the FifoQueue attribute to true for a FIFO queue."
                )
            raise invalid_value(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in "
                "length"
            )
        arn = f"arn:aws:sqs:{ctx.region}:{ctx.account}:{name}"
        check_policy(given.get("Policy", ""))
        checked = check_attributes(given, fifo, True, arn, self.queues.queue_by_arn)
        attributes = {**DEFAULTS, **(FIFO_DEFAULTS if fifo else {}), **checked}
        if not fifo:
            attributes.pop("FifoQueue", None)
        key = (ctx.account, ctx.region, name)
        existing = self.queues.find(key)
        if existing is not None:
            for attribute, value in checked.items():
                if existing.attributes.get(attribute, "") != value:
                    raise sqs_error(
                        "QueueNameExists",
                        "A queue already exists with the same name and a different value for "
                        f"attribute {attribute}",
                        "QueueAlreadyExists",
                    )
            return {"QueueUrl": existing.url(ctx.endpoint)}
        deleted = self.queues.deleted_at.get(key)
        if deleted is not None and self.clock.platform_now() - deleted < RECREATE_COOLDOWN:
            raise sqs_error(
                "QueueDeletedRecently",
                "You must wait 60 seconds after deleting a queue before you can create another "
                "with the same name.",
                "AWS.SimpleQueueService.QueueDeletedRecently",
            )
        tags = dict(params.get("tags") or {})
        queue = self.queues.create(ctx.account, ctx.region, name, attributes, tags)
        return {"QueueUrl": queue.url(ctx.endpoint)}

    async def GetQueueUrl(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        account = params.get("QueueOwnerAWSAccountId") or ctx.account
        url = f"{ctx.endpoint}/{account}/{params['QueueName']}"
        return {"QueueUrl": self._from_url(ctx, url, "GetQueueUrl").url(ctx.endpoint)}

    async def ListQueues(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("QueueNamePrefix") or ""
        names = sorted(
            q.name
            for (account, region, name), q in self.queues.queues.items()
            if account == ctx.account and region == ctx.region and name.startswith(prefix)
        )
        limit = params.get("MaxResults")
        if limit is not None and not 1 <= limit <= 1000:
            raise parameter_error("MaxResults", limit, "MaxResults must be between 1 and 1000.")
        after = ""
        if params.get("NextToken"):
            try:
                after = base64.urlsafe_b64decode(params["NextToken"].encode()).decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise invalid_value("Invalid NextToken value.") from None
            names = [n for n in names if n > after]
        result: dict[str, Any] = {}
        if limit is None:
            names = names[:1000]
        elif len(names) > limit:
            names = names[:limit]
            result["NextToken"] = base64.urlsafe_b64encode(names[-1].encode()).decode()
        urls = [self.queues.queues[(ctx.account, ctx.region, n)].url(ctx.endpoint) for n in names]
        if urls:
            result["QueueUrls"] = urls
        return result

    async def DeleteQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self.queues.delete(self._from_url(ctx, params["QueueUrl"], "DeleteQueue"))
        return {}

    async def PurgeQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "PurgeQueue")
        now = self.clock.platform_now()
        if now - queue.last_purge < PURGE_COOLDOWN:
            raise sqs_error(
                "PurgeQueueInProgress",
                f"Only one PurgeQueue operation on {queue.name} is allowed every 60 seconds.",
                "AWS.SimpleQueueService.PurgeQueueInProgress",
                403,
            )
        self.queues.purge(queue)
        return {}

    async def GetQueueAttributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "GetQueueAttributes")
        names = list(params.get("AttributeNames") or [])
        everything = "All" in names
        available: dict[str, str] = {
            **queue.attributes,
            "CreatedTimestamp": str(int(queue.created)),
            "LastModifiedTimestamp": str(int(queue.modified)),
            "QueueArn": queue.arn,
        }
        if everything or any(name.startswith("ApproximateNumberOf") for name in names):
            # Counted in the store (a range of its index): only when asked for.
            visible, hidden, delayed = self.queues.counts(queue)
            available["ApproximateNumberOfMessages"] = str(visible)
            available["ApproximateNumberOfMessagesNotVisible"] = str(hidden)
            available["ApproximateNumberOfMessagesDelayed"] = str(delayed)
        result = {}
        for name in available if everything else names:
            if name in available:
                result[name] = available[name]
            elif (name in FIFO_ONLY and not queue.fifo) or (
                name not in SETTABLE and name not in COMPUTED
            ):
                raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        return {"Attributes": result} if result else {}

    async def SetQueueAttributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "SetQueueAttributes")
        check_policy((params.get("Attributes") or {}).get("Policy", ""))
        checked = check_attributes(
            dict(params.get("Attributes") or {}),
            queue.fifo,
            False,
            queue.arn,
            self.queues.queue_by_arn,
        )
        for name, value in checked.items():
            if value == "" and name in FREE_TEXT:
                queue.attributes.pop(name, None)
            else:
                queue.attributes[name] = value
        queue.modified = self.clock.wall()
        self.queues.save(queue)
        return {}

    async def SendMessage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "SendMessage")
        return self._send_one(queue, params)

    async def SendMessageBatch(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "SendMessageBatch")
        entries = self._check_batch(params.get("Entries") or [], "SendMessageBatchRequestEntry")
        total = sum(
            len(e.get("MessageBody", "").encode())
            + attributes_size(e.get("MessageAttributes") or {})
            for e in entries
        )
        limit = queue.int_attribute("MaximumMessageSize")
        if total > limit:
            raise sqs_error(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes.",
                "AWS.SimpleQueueService.BatchRequestTooLong",
            )
        successful, failed = [], []
        for entry in entries:
            try:
                successful.append({"Id": entry["Id"], **self._send_one(queue, entry)})
            except AwsError as error:
                failed.append(_failure(entry["Id"], error))
        return {"Successful": successful, "Failed": failed}

    async def ReceiveMessage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "ReceiveMessage")
        count = params.get("MaxNumberOfMessages")
        if count is None:
            count = 1
        if not 1 <= count <= BATCH_LIMIT:
            raise parameter_error(
                "MaxNumberOfMessages", count, "Must be between 1 and 10, if provided."
            )
        wait = params.get("WaitTimeSeconds")
        if wait is None:
            wait = queue.int_attribute("ReceiveMessageWaitTimeSeconds")
        if not 0 <= wait <= 20:
            raise parameter_error("WaitTimeSeconds", wait, "Must be >= 0 and <= 20, if provided.")
        visibility = params.get("VisibilityTimeout")
        if visibility is None:
            visibility = queue.int_attribute("VisibilityTimeout")
        if not 0 <= visibility <= MAX_VISIBILITY:
            raise parameter_error(
                "VisibilityTimeout", visibility, "Must be between 0 and 43200, if provided."
            )
        system_names = [
            *(params.get("MessageSystemAttributeNames") or []),
            *(params.get("AttributeNames") or []),
        ]
        attribute_names = params.get("MessageAttributeNames") or []
        options = ReceiveOptions(count, self.clock.platform_delay(visibility))
        claims = await self.queues.receive_waiting(queue, options, float(wait))
        messages = [self._received(queue, claim, system_names, attribute_names) for claim in claims]
        return {"Messages": messages} if messages else {}

    def _received(
        self, queue: Queue, claim: Claim, system_names: list[str], attribute_names: list[str]
    ) -> dict[str, Any]:
        message = claim.message
        out: dict[str, Any] = {
            "MessageId": message.id,
            "ReceiptHandle": self.queues.receipt_handle(queue, claim),
            "MD5OfBody": message.md5_body,
            "Body": message.body,
        }
        system = system_attributes(message)
        chosen = {k: v for k, v in system.items() if wanted(system_names, k)}
        if chosen:
            out["Attributes"] = chosen
        attributes = {k: v for k, v in message.attributes.items() if wanted(attribute_names, k)}
        if attributes:
            out["MessageAttributes"] = attributes
            out["MD5OfMessageAttributes"] = md5_of_attributes(attributes)
        return out

    async def DeleteMessage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "DeleteMessage")
        self.queues.delete_message(queue, params["ReceiptHandle"])
        return {}

    async def DeleteMessageBatch(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "DeleteMessageBatch")
        entries = self._check_batch(params.get("Entries") or [], "DeleteMessageBatchRequestEntry")
        successful, failed = [], []
        for entry in entries:
            try:
                self.queues.delete_message(queue, entry["ReceiptHandle"])
                successful.append({"Id": entry["Id"]})
            except AwsError as error:
                failed.append(_failure(entry["Id"], error))
        return {"Successful": successful, "Failed": failed}

    async def ChangeMessageVisibility(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "ChangeMessageVisibility")
        self.queues.change_visibility(queue, params["ReceiptHandle"], params["VisibilityTimeout"])
        return {}

    async def ChangeMessageVisibilityBatch(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "ChangeMessageVisibilityBatch")
        entries = self._check_batch(
            params.get("Entries") or [], "ChangeMessageVisibilityBatchRequestEntry"
        )
        successful, failed = [], []
        for entry in entries:
            try:
                self.queues.change_visibility(
                    queue, entry["ReceiptHandle"], entry.get("VisibilityTimeout") or 0
                )
                successful.append({"Id": entry["Id"]})
            except AwsError as error:
                failed.append(_failure(entry["Id"], error))
        return {"Successful": successful, "Failed": failed}

    @staticmethod
    def _check_batch(entries: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        if not entries:
            raise sqs_error(
                "EmptyBatchRequest",
                f"There should be at least one {kind} in the request.",
                "AWS.SimpleQueueService.EmptyBatchRequest",
            )
        if len(entries) > BATCH_LIMIT:
            raise sqs_error(
                "TooManyEntriesInBatchRequest",
                f"Maximum number of entries per request are {BATCH_LIMIT}. You have sent "
                f"{len(entries)}.",
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            )
        seen = set()
        for entry in entries:
            entry_id = entry["Id"]
            if not BATCH_ID.fullmatch(entry_id):
                raise sqs_error(
                    "InvalidBatchEntryId",
                    "A batch entry id can only contain alphanumeric characters, hyphens and "
                    "underscores. It can be at most 80 letters long.",
                    "AWS.SimpleQueueService.InvalidBatchEntryId",
                )
            if entry_id in seen:
                raise sqs_error(
                    "BatchEntryIdsNotDistinct",
                    f"Id {entry_id} repeated.",
                    "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                )
            seen.add(entry_id)
        return entries

    async def ListDeadLetterSourceQueues(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        dead = self._from_url(ctx, params["QueueUrl"], "ListDeadLetterSourceQueues")
        urls = []
        for queue in sorted(self.queues.queues.values(), key=lambda q: q.name):
            policy = queue.redrive()
            if queue.account == dead.account and policy is not None and policy[0] == dead.arn:
                urls.append(queue.url(ctx.endpoint))
        return {"queueUrls": urls}

    async def TagQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "TagQueue")
        queue.tags.update(params.get("Tags") or {})
        self.queues.save(queue)
        return {}

    async def UntagQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "UntagQueue")
        for key in params.get("TagKeys") or []:
            queue.tags.pop(key, None)
        self.queues.save(queue)
        return {}

    async def ListQueueTags(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "ListQueueTags")
        return {"Tags": dict(queue.tags)} if queue.tags else {}

    async def AddPermission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "AddPermission")
        add_permission(queue, params)
        queue.modified = self.clock.wall()
        self.queues.save(queue)
        return {}

    async def RemovePermission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"], "RemovePermission")
        remove_permission(queue, params)
        queue.modified = self.clock.wall()
        self.queues.save(queue)
        return {}


def _failure(entry_id: str, error: AwsError) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "SenderFault": True,
        "Code": error.headers.get("x-amzn-query-error", error.code).split(";")[0],
        "Message": error.message,
    }
