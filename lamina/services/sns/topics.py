"""Every SNS topic and subscription, owned here and written through to the store.

Topics are keyed by (account, region, name) and found by ARN; subscriptions by ARN.
A subscription of an HTTP/S endpoint waits for its confirmation (a token the endpoint
is sent); the others are confirmed when made, as AWS confirms them for the topic's
owner. FIFO deduplication ids are remembered for 5 minutes (a platform delay).

On a cluster's shared database every change is announced; the other nodes read every
topic and subscription again (they change rarely; publishing reads only memory).
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lamina.clock import Clock
from lamina.patterns import Pattern
from lamina.services.sns.messages import compile_filter
from lamina.services.sns.store import TopicStore

log = logging.getLogger("lamina.sns")

DEDUP_WINDOW = 300.0


def default_policy(arn: str, account: str) -> str:
    document = {
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [
            {
                "Sid": "__default_statement_ID",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "SNS:GetTopicAttributes",
                    "SNS:SetTopicAttributes",
                    "SNS:AddPermission",
                    "SNS:RemovePermission",
                    "SNS:DeleteTopic",
                    "SNS:Subscribe",
                    "SNS:ListSubscriptionsByTopic",
                    "SNS:Publish",
                ],
                "Resource": arn,
                "Condition": {"StringEquals": {"AWS:SourceOwner": account}},
            }
        ],
    }
    return json.dumps(document, separators=(",", ":"))


@dataclass
class Subscription:
    arn: str
    topic_arn: str
    account: str  # the subscriber's
    protocol: str
    endpoint: str
    attributes: dict[str, str]
    confirmed: bool
    token: str | None = None
    api_endpoint: str = ""  # the address Lamina was reached at, for the URLs it sends
    authenticate_unsubscribe: bool = False  # ConfirmSubscription's AuthenticateOnUnsubscribe
    pattern: Pattern | None = None

    def record(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "protocol": self.protocol,
            "endpoint": self.endpoint,
            "attributes": self.attributes,
            "confirmed": self.confirmed,
            "token": self.token,
            "api_endpoint": self.api_endpoint,
            "authenticate_unsubscribe": self.authenticate_unsubscribe,
        }

    def compile(self) -> None:
        text = self.attributes.get("FilterPolicy")
        scope = self.attributes.get("FilterPolicyScope", "MessageAttributes")
        self.pattern = compile_filter(text, scope) if text else None

    @property
    def raw(self) -> bool:
        return self.attributes.get("RawMessageDelivery", "false").lower() == "true"

    @property
    def scope(self) -> str:
        return self.attributes.get("FilterPolicyScope", "MessageAttributes")

    def dead_letter_arn(self) -> str | None:
        text = self.attributes.get("RedrivePolicy")
        if not text:
            return None
        try:
            target = json.loads(text).get("deadLetterTargetArn")
        except (ValueError, AttributeError):
            return None
        return str(target) if target else None


@dataclass
class Topic:
    id: int
    account: str
    region: str
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]
    sequence: int = 0
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    deleted_subscriptions: int = 0
    dedup: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{self.name}"

    @property
    def fifo(self) -> bool:
        return self.attributes.get("FifoTopic", "false").lower() == "true"

    def record(self) -> dict[str, Any]:
        return {
            "attributes": self.attributes,
            "tags": self.tags,
            "sequence": self.sequence,
            "deleted_subscriptions": self.deleted_subscriptions,
        }


class Topics:
    """The one owner of topics and subscriptions."""

    def __init__(self, store: TopicStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.topics: dict[tuple[str, str, str], Topic] = {}
        self.by_arn: dict[str, Topic] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.node = uuid.uuid4().hex[:12]
        self._load()

    # Nodes sharing the database ------------------------------------------------------------
    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        """Reload when another node announces a change (`deliver` runs it on the loop)."""

        def told(payload: str) -> None:
            if payload != self.node:  # "" : the listening connection was lost and made again
                deliver(self.reload)

        self.store.listen(told)

    def reload(self) -> None:
        """Read every topic and subscription again; on failure (the database out of
        reach) keep what was known, until the next announcement."""
        dedup = {arn: topic.dedup for arn, topic in self.by_arn.items()}
        known = self.topics, self.by_arn, self.subscriptions
        self.topics, self.by_arn, self.subscriptions = {}, {}, {}
        try:
            self._load()
        except Exception:
            self.topics, self.by_arn, self.subscriptions = known
            log.warning("could not read topics again; keeping those known", exc_info=True)
            return
        for arn, remembered in dedup.items():
            if arn in self.by_arn:
                self.by_arn[arn].dedup = remembered

    def _changed(self) -> None:
        self.store.notify(self.node)

    def _load(self) -> None:
        for topic_id, account, region, name, record in list(self.store.topics.all()):
            topic = Topic(
                topic_id,
                account,
                region,
                name,
                dict(record["attributes"]),
                dict(record.get("tags") or {}),
                int(record.get("sequence", 0)),
                deleted_subscriptions=int(record.get("deleted_subscriptions", 0)),
            )
            self.topics[(account, region, name)] = topic
            self.by_arn[topic.arn] = topic
        for arn, topic_arn, record in self.store.subscriptions():
            found = self.by_arn.get(topic_arn)
            if found is None:
                continue
            subscription = Subscription(
                arn,
                topic_arn,
                record["account"],
                record["protocol"],
                record["endpoint"],
                dict(record["attributes"]),
                bool(record["confirmed"]),
                record.get("token"),
                record.get("api_endpoint", ""),
                bool(record.get("authenticate_unsubscribe")),
            )
            subscription.compile()
            found.subscriptions[arn] = subscription
            self.subscriptions[arn] = subscription

    # Topics -------------------------------------------------------------------------------
    def create(
        self, account: str, region: str, name: str, attributes: dict[str, str],
        tags: dict[str, str],
    ) -> Topic:  # fmt: skip
        arn = f"arn:aws:sns:{region}:{account}:{name}"
        attributes = {"Policy": default_policy(arn, account), "DisplayName": "", **attributes}
        topic_id = self.store.topics.insert(account, region, name, {})
        topic = Topic(topic_id, account, region, name, attributes, tags)
        self.store.topics.update(topic_id, topic.record())
        self.topics[(account, region, name)] = topic
        self.by_arn[arn] = topic
        self._changed()
        return topic

    def save(self, topic: Topic, announce: bool = True) -> None:
        self.store.topics.update(topic.id, topic.record())
        if announce:
            self._changed()

    def delete(self, topic: Topic) -> None:
        self.store.delete_topic(topic.id, topic.arn)
        self.topics.pop((topic.account, topic.region, topic.name), None)
        self.by_arn.pop(topic.arn, None)
        for arn in topic.subscriptions:
            self.subscriptions.pop(arn, None)
        self._changed()

    def next_sequence(self, topic: Topic) -> str:
        topic.sequence += 1
        self.save(topic, announce=False)
        return f"{topic.sequence:020d}"

    def seen(self, topic: Topic, dedup: str) -> tuple[str, str] | None:
        """The message id and sequence number of a FIFO message with this deduplication
        id in the last 5 minutes, if any."""
        now = self.clock.wall()
        found = topic.dedup.get(dedup)
        if found is not None and found[2] > now:
            return found[0], found[1]
        return None

    def remember(self, topic: Topic, dedup: str, message_id: str, sequence: str) -> None:
        now = self.clock.wall()
        topic.dedup[dedup] = (message_id, sequence, now + self.clock.platform_delay(DEDUP_WINDOW))
        if len(topic.dedup) > 1000:
            topic.dedup = {k: v for k, v in topic.dedup.items() if v[2] > now}

    # Subscriptions -----------------------------------------------------------------------
    def subscribe(
        self,
        topic: Topic,
        account: str,
        protocol: str,
        endpoint: str,
        attributes: dict[str, str],
        api_endpoint: str,
    ) -> Subscription:
        confirmed = protocol not in ("http", "https")
        subscription = Subscription(
            f"{topic.arn}:{uuid.uuid4()}",
            topic.arn,
            account,
            protocol,
            endpoint,
            attributes,
            confirmed,
            None if confirmed else secrets.token_hex(64),
            api_endpoint,
        )
        subscription.compile()
        self.store.put_subscription(subscription.arn, topic.arn, subscription.record())
        topic.subscriptions[subscription.arn] = subscription
        self.subscriptions[subscription.arn] = subscription
        self._changed()
        return subscription

    def save_subscription(self, subscription: Subscription) -> None:
        self.store.put_subscription(subscription.arn, subscription.topic_arn, subscription.record())
        self._changed()

    def unsubscribe(self, subscription: Subscription) -> None:
        self.store.delete_subscription(subscription.arn)
        self.subscriptions.pop(subscription.arn, None)
        topic = self.by_arn.get(subscription.topic_arn)
        if topic is not None:
            topic.subscriptions.pop(subscription.arn, None)
            topic.deleted_subscriptions += 1
            self.save(topic)
