"""Publishing: a message checked, numbered (FIFO topics), deduplicated and handed to
delivery.py. `publish_as_service` is how S3 and EventBridge publish to a topic
(lamina.deliveries.TopicPublisher): the topic's policy must let their service in.
"""

from __future__ import annotations

import datetime as dt
import uuid
from functools import lru_cache
from typing import Any

from lamina import iam
from lamina.clock import Clock
from lamina.deliveries import Delivery
from lamina.services.sns.delivery import Deliveries
from lamina.services.sns.messages import (
    MESSAGE_LIMIT,
    check_attributes,
    check_message,
    content_dedup_id,
    invalid,
)
from lamina.services.sns.topics import Topic, Topics

SUBJECT_LIMIT = 100


@lru_cache(maxsize=1024)
def policy_document(text: str) -> dict[str, Any] | None:
    return iam.parse(text)


def timestamp(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Publisher:
    def __init__(self, topics: Topics, deliveries: Deliveries, clock: Clock) -> None:
        self.topics = topics
        self.deliveries = deliveries
        self.clock = clock

    def prepare(self, topic: Topic, entry: dict[str, Any], endpoint: str) -> dict[str, Any]:
        """A Publish request (or batch entry) checked: the message as delivery.py takes
        it, or AWS's error."""
        subject = entry.get("Subject")
        if subject is not None and (
            subject == ""
            or len(subject) > SUBJECT_LIMIT
            or not all(32 <= ord(c) < 127 for c in subject)
        ):
            raise invalid("Subject")
        attributes = check_attributes(dict(entry.get("MessageAttributes") or {}))
        body = check_message(entry.get("Message"), entry.get("MessageStructure"), attributes)
        group, dedup = entry.get("MessageGroupId"), entry.get("MessageDeduplicationId")
        if topic.fifo:
            if not group:
                raise invalid("The MessageGroupId parameter is required for FIFO topics")
            if not dedup:
                if topic.attributes.get("ContentBasedDeduplication", "false") != "true":
                    raise invalid(
                        "The topic should either have ContentBasedDeduplication enabled or "
                        "MessageDeduplicationId provided explicitly"
                    )
                dedup = content_dedup_id(str(entry.get("Message")))
        elif dedup:
            raise invalid(
                "MessageDeduplicationId Reason: The request includes MessageDeduplicationId "
                "parameter that is not valid for this topic type"
            )
        message: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "topic_arn": topic.arn,
            "message": body,
            "subject": subject,
            "attributes": attributes,
            "timestamp": timestamp(self.clock.wall()),
            "endpoint": endpoint,
        }
        if topic.fifo:
            message["group"], message["dedup"] = group, dedup
        return message

    async def publish(self, topic: Topic, message: dict[str, Any]) -> dict[str, Any]:
        """Deliver a prepared message; what Publish answers (MessageId, SequenceNumber)."""
        if topic.fifo:
            seen = self.topics.seen(topic, message["dedup"])
            if seen is not None:  # a duplicate: accepted again, delivered once
                return {"MessageId": seen[0], "SequenceNumber": seen[1]}
            message["sequence"] = self.topics.next_sequence(topic)
            self.topics.remember(topic, message["dedup"], message["id"], message["sequence"])
        await self.deliveries.publish(topic, message)
        answer = {"MessageId": message["id"]}
        if topic.fifo:
            answer["SequenceNumber"] = message["sequence"]
        return answer

    async def publish_as_service(
        self,
        topic_arn: str,
        message: str,
        *,
        service: str,
        source_arn: str,
        source_account: str,
        subject: str | None = None,
    ) -> Delivery:
        found = self.may_deliver(
            topic_arn, service=service, source_arn=source_arn, source_account=source_account
        )
        topic = self.topics.by_arn.get(topic_arn)
        if found is not Delivery.ACCEPTED or topic is None:
            return found
        if len(message.encode()) > MESSAGE_LIMIT:
            return Delivery.TOO_LARGE
        entry: dict[str, Any] = {"Message": message, "Subject": subject}
        if topic.fifo:
            entry["MessageGroupId"] = source_arn
            entry["MessageDeduplicationId"] = str(uuid.uuid4())
        try:
            prepared = self.prepare(topic, entry, "")
        except Exception:
            return Delivery.FAILED
        await self.publish(topic, prepared)
        return Delivery.ACCEPTED

    def may_deliver(
        self, topic_arn: str, *, service: str, source_arn: str, source_account: str
    ) -> Delivery:
        """What publish_as_service would meet (ACCEPTED, MISSING, DENIED), publishing
        nothing: the topic's policy must let `service` publish for `source_arn`."""
        topic = self.topics.by_arn.get(topic_arn)
        if topic is None:
            return Delivery.MISSING
        text = topic.attributes.get("Policy", "")
        caller = iam.Caller(source_account, "", service)
        context = {"aws:sourcearn": source_arn, "aws:sourceaccount": source_account}
        document = policy_document(text) if text else None
        if not iam.allows(document, caller, "sns:Publish", topic.arn, context):
            return Delivery.DENIED
        return Delivery.ACCEPTED

    # Lambda's destinations and dead-letter topics (control/event_configs.TopicSender) ------
    def may_publish(self, arn: str, account: str, principal: str) -> bool:
        """Whether a function of `account` running as `principal` (its execution role) may
        publish to the topic: its own account's, or one whose policy allows the role."""
        topic = self.topics.by_arn.get(arn)
        if topic is None:
            return False
        if topic.account == account:
            return True
        text = topic.attributes.get("Policy", "")
        document = policy_document(text) if text else None
        caller = iam.Caller(account, principal or f"arn:aws:iam::{account}:root")
        return iam.allows(document, caller, "sns:Publish", topic.arn)

    async def publish_internal(self, arn: str, message: str) -> bool:
        topic = self.topics.by_arn.get(arn)
        if topic is None or len(message.encode()) > MESSAGE_LIMIT:
            return False
        entry: dict[str, Any] = {"Message": message}
        if topic.fifo:
            entry["MessageGroupId"] = "lambda"
            entry["MessageDeduplicationId"] = str(uuid.uuid4())
        await self.publish(topic, self.prepare(topic, entry, ""))
        return True
