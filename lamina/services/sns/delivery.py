"""Delivering published messages to subscriptions, with AWS's retries.

Functions and queues (AWS-managed endpoints) are handed their message while Publish runs:
an async invoke (the function's event queue then owns retries, throttles and its DLQ) or
a SendMessage, both on disk before Publish answers. What they refuse is a client-side
error (no such function or queue, a policy that does not let SNS in, a message too
large): AWS does not retry those; the message goes to the subscription's dead-letter
queue (RedrivePolicy), if it has one. A failure on the target's side (its store out of
reach) is retried from the outbox as AWS retries managed endpoints: 3 times at once, 2
after 1 s, 10 backing off from 1 s to 20 s, then every 20 s (100,015 attempts in all).

HTTP/S endpoints are posted to by a worker from the outbox (store.py), so a message
accepted for them survives a crash. A failure (no connection, a status outside 2xx) is
retried as the subscription's (or the topic's) delivery policy says — by default 3
retries 20 s apart — then dead-lettered. Delays are platform delays (the clock's).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import random
from typing import Any

import urllib3

from lamina.clock import Clock
from lamina.deliveries import Delivery, FunctionInvoker, MetricSink, QueueSender
from lamina.services.sns.messages import (
    lambda_event,
    matches,
    notification,
    sqs_attributes,
    text_for,
)
from lamina.services.sns.store import Pending, TopicStore
from lamina.services.sns.topics import Subscription, Topic, Topics
from lamina.tasks import stop_task

log = logging.getLogger("lamina.sns")

SERVICE = "sns.amazonaws.com"
HTTP_TIMEOUT = 15.0  # seconds AWS waits for an HTTP endpoint
MAX_IN_FLIGHT = 64
# Real seconds a node holds a delivery it is making (not scaled: an HTTP attempt may take
# HTTP_TIMEOUT whatever the time scale); past it, another node (or this one) tries again.
LEASE = HTTP_TIMEOUT + 15.0
DEFAULT_HTTP_POLICY = {
    "numRetries": 3,
    "numNoDelayRetries": 0,
    "minDelayTarget": 20,
    "maxDelayTarget": 20,
    "numMinDelayRetries": 0,
    "numMaxDelayRetries": 0,
    "backoffFunction": "linear",
}


def retry_delay(policy: dict[str, Any], attempt: int) -> float | None:
    """Seconds before retry number `attempt` (1-based) under an HTTP/S healthy retry
    policy, or None when the policy is used up. Phases as AWS defines them: immediate
    retries, then retries at the minimum delay, then a backoff from the minimum to the
    maximum delay, then retries at the maximum."""
    total = int(policy.get("numRetries", 3))
    if attempt > total:
        return None
    no_delay = int(policy.get("numNoDelayRetries", 0))
    at_min = int(policy.get("numMinDelayRetries", 0))
    at_max = int(policy.get("numMaxDelayRetries", 0))
    low = float(policy.get("minDelayTarget", 20))
    high = float(policy.get("maxDelayTarget", 20))
    if attempt <= no_delay:
        return 0.0
    if attempt <= no_delay + at_min:
        return low
    backoff = total - no_delay - at_min - at_max
    step = attempt - no_delay - at_min
    if step > backoff or backoff <= 1:
        return high if step > backoff else low
    share = (step - 1) / (backoff - 1)
    kind = policy.get("backoffFunction", "linear")
    if kind == "exponential":
        value = low * (high / max(low, 1e-9)) ** share
    elif kind == "geometric":
        value = low + (high - low) * share**2
    elif kind == "arithmetic":
        value = low + (high - low) * share * (share + 1) / 2
    else:
        value = low + (high - low) * share
    return min(high, max(low, value))


MANAGED_ATTEMPTS = 100_015


def managed_delay(attempt: int) -> float | None:
    """Seconds before retry number `attempt` (1-based) to a function or a queue, AWS's
    policy for managed endpoints; None when it is used up."""
    if attempt > MANAGED_ATTEMPTS:
        return None
    if attempt <= 3:
        return 0.0
    if attempt <= 5:
        return 1.0
    if attempt <= 15:
        return min(20.0, 1.0 * (20.0 ** ((attempt - 6) / 9)))
    return 20.0


def _http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    with urllib3.PoolManager(retries=False, timeout=HTTP_TIMEOUT) as pool:
        response = pool.request("POST", url, body=body, headers=headers, redirect=False)
        return int(response.status)


class Deliveries:
    """Hands each published message to its subscriptions; retries HTTP/S deliveries."""

    def __init__(
        self,
        topics: Topics,
        store: TopicStore,
        clock: Clock,
        functions: FunctionInvoker,
        queues: QueueSender,
        metrics: MetricSink | None = None,
    ) -> None:
        self.metrics = metrics
        self.topics = topics
        self.store = store
        self.clock = clock
        self.functions = functions
        self.queues = queues
        self._due: list[tuple[float, int]] = []
        self._pending: dict[int, Pending] = {}
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for pending in self.store.pending():
            self._schedule(pending)
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def close(self) -> None:
        await stop_task(self._worker)
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    # Publishing --------------------------------------------------------------------------
    async def publish(self, topic: Topic, message: dict[str, Any]) -> None:
        """Deliver `message` to every confirmed subscription whose filter policy it
        passes: functions and queues now (together: their writes share commits), HTTP/S
        endpoints through the outbox."""
        later: list[tuple[str, dict[str, Any], float]] = []
        now: list[Subscription] = []
        self.count(topic.arn, "NumberOfMessagesPublished")
        self.count(topic.arn, "PublishSize", len(str(message["message"]).encode()), "Bytes")
        for subscription in list(topic.subscriptions.values()):
            if not subscription.confirmed:
                continue
            if not matches(subscription.pattern, subscription.scope, message,
                           subscription.protocol):  # fmt: skip
                self.count(topic.arn, "NumberOfNotificationsFilteredOut")
                self.count(topic.arn, f"NumberOfNotificationsFilteredOut-{subscription.scope}")
                continue
            if subscription.protocol in ("http", "https"):
                later.append((subscription.arn, message, self.clock.wall()))
            else:
                now.append(subscription)
        if later:
            self.queue_later(later)
        if now:
            await asyncio.gather(*(self._deliver_now(topic, s, message) for s in now))

    async def _deliver_now(
        self, topic: Topic, subscription: Subscription, message: dict[str, Any]
    ) -> None:
        try:
            outcome = await self._hand_over(topic, subscription, message)
        except Exception:
            log.warning("SNS delivery to %s failed", subscription.endpoint, exc_info=True)
            outcome = Delivery.FAILED
        if outcome is Delivery.FAILED:  # the target's side: retried from the outbox
            self.queue_later([(subscription.arn, message, self.clock.wall())])
            return
        if outcome is not Delivery.ACCEPTED:
            log.warning("SNS delivery to %s failed (%s)", subscription.endpoint, outcome.value)
            self.count(topic.arn, "NumberOfNotificationsFailed")
            self._dead_letter(topic, subscription, message)
        else:
            self.count(topic.arn, "NumberOfNotificationsDelivered")

    def count(self, topic_arn: str, name: str, value: float = 1, unit: str = "Count") -> None:
        """A figure of the topic's, in CloudWatch's AWS/SNS namespace."""
        if self.metrics is not None:
            _, _, _, region, account, topic = topic_arn.split(":", 5)
            dims = (("TopicName", topic),)
            self.metrics.put(account, region, "AWS/SNS", name, dims, value, unit=unit)

    def queue_later(self, rows: list[tuple[str, dict[str, Any], float]]) -> None:
        """Deliveries for the worker (HTTP/S), on disk first."""
        ids = self.store.add_pending(rows)
        for pending_id, (arn, message, due) in zip(ids, rows, strict=True):
            self._schedule(Pending(pending_id, arn, message, 0, due))
        self._wake.set()

    async def _hand_over(
        self, topic: Topic, subscription: Subscription, message: dict[str, Any]
    ) -> Delivery:
        if subscription.protocol == "lambda":
            payload = json.dumps(lambda_event(message, subscription.arn)).encode()
            return await self.functions.invoke_async(
                subscription.endpoint,
                payload,
                service=SERVICE,
                source_arn=topic.arn,
                source_account=topic.account,
            )
        if subscription.protocol == "sqs":
            return self._to_queue(topic, subscription, subscription.endpoint, message)
        return Delivery.FAILED

    def _to_queue(
        self, topic: Topic, subscription: Subscription, queue_arn: str, message: dict[str, Any]
    ) -> Delivery:
        if subscription.raw:
            body = text_for(message, "sqs")
            attributes = sqs_attributes(message["attributes"])
        else:
            body = json.dumps(notification(message, subscription.arn, "sqs"))
            attributes = {}
        return self.queues.send_as_service(
            queue_arn,
            body,
            service=SERVICE,
            source_arn=topic.arn,
            source_account=topic.account,
            attributes=attributes,
            group=message.get("group"),
            dedup=message.get("dedup"),
        )

    def _dead_letter(
        self, topic: Topic, subscription: Subscription, message: dict[str, Any]
    ) -> None:
        target = subscription.dead_letter_arn()
        if target is None:
            return
        outcome = self._to_queue(topic, subscription, target, message)
        if outcome is not Delivery.ACCEPTED:
            log.warning("SNS dead-letter queue %s refused a message (%s)", target, outcome.value)
            self.count(topic.arn, "NumberOfNotificationsFailedToRedriveToDlq")
        else:
            self.count(topic.arn, "NumberOfNotificationsRedrivenToDlq")

    # The HTTP/S worker -------------------------------------------------------------------
    def _schedule(self, pending: Pending) -> None:
        self._pending[pending.id] = pending
        heapq.heappush(self._due, (pending.due, pending.id))

    async def _work(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.wall()
            while self._due and self._due[0][0] <= now and len(self._running) < MAX_IN_FLIGHT:
                due, pending_id = heapq.heappop(self._due)
                pending = self._pending.get(pending_id)
                if pending is None or due != pending.due:
                    continue  # done, or planned again since
                lease = now + LEASE
                if not self.store.take(pending, lease):  # another node makes it
                    self._pending.pop(pending_id, None)
                    continue
                heapq.heappush(self._due, (lease, pending_id))  # again if this attempt dies
                task = asyncio.get_running_loop().create_task(self._attempt(pending))
                self._running.add(task)
                task.add_done_callback(self._finished)
            timeout = None
            if self._due and len(self._running) < MAX_IN_FLIGHT:
                timeout = max(0.0, self._due[0][0] - now)
            # asyncio.timeout, not wait_for: a cancellation that comes as the wake-up
            # does is never lost (Python 3.11's wait_for can swallow it).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _attempt(self, pending: Pending) -> None:
        message = pending.message
        target = message.get("deliver_to")  # a confirmation names its endpoint itself
        subscription = self.topics.subscriptions.get(pending.subscription_arn)
        if target is None and subscription is None:
            self._done(pending)  # unsubscribed meanwhile
            return
        managed = (
            target is None
            and subscription is not None
            and (subscription.protocol in ("lambda", "sqs"))
        )
        if managed:
            assert subscription is not None
            ok = await self._managed_attempt(subscription, message)
            if ok is None:  # refused for good: not retried
                self._done(pending)
                return
        else:
            if target is not None:
                url, body, headers = target["endpoint"], message["body"], message["headers"]
            else:
                assert subscription is not None
                url, body, headers = self._http_request(subscription, message)
            try:
                status = await asyncio.to_thread(_http_post, url, body.encode(), headers)
                ok = 200 <= status < 300
            except Exception as exc:  # no connection, a timeout: the endpoint is unavailable
                log.info("SNS delivery to %s failed: %s", url, exc)
                ok = False
        if ok:
            self._done(pending)
            if subscription is not None and target is None:
                self.count(subscription.topic_arn, "NumberOfNotificationsDelivered")
            return
        pending.attempts += 1
        if managed:
            delay = managed_delay(pending.attempts)
        else:
            delay = retry_delay(self._policy(subscription), pending.attempts)
        if delay is None:
            self._done(pending)
            if subscription is not None and target is None:
                self.count(subscription.topic_arn, "NumberOfNotificationsFailed")
            topic = self.topics.by_arn.get(subscription.topic_arn) if subscription else None
            if topic is not None and subscription is not None:
                self._dead_letter(topic, subscription, message)
            return
        jitter = delay * random.uniform(-0.1, 0.1) if delay else 0.0
        pending.due = self.clock.wall() + self.clock.platform_delay(delay + jitter)
        self.store.reschedule(pending.id, pending.attempts, pending.due)
        heapq.heappush(self._due, (pending.due, pending.id))

    async def _managed_attempt(
        self, subscription: Subscription, message: dict[str, Any]
    ) -> bool | None:
        """Hand a function or a queue its message again: True when taken, False to retry,
        None when refused for good (then dead-lettered)."""
        topic = self.topics.by_arn.get(subscription.topic_arn)
        if topic is None:
            return None
        try:
            outcome = await self._hand_over(topic, subscription, message)
        except Exception:
            log.warning("SNS delivery to %s failed", subscription.endpoint, exc_info=True)
            return False
        if outcome is Delivery.ACCEPTED:
            return True
        if outcome is Delivery.FAILED:
            return False
        self.count(topic.arn, "NumberOfNotificationsFailed")
        self._dead_letter(topic, subscription, message)
        return None

    def _done(self, pending: Pending) -> None:
        self._pending.pop(pending.id, None)
        self.store.done(pending.id)

    def _policy(self, subscription: Subscription | None) -> dict[str, Any]:
        texts = []
        if subscription is not None:
            texts.append(subscription.attributes.get("DeliveryPolicy"))
            topic = self.topics.by_arn.get(subscription.topic_arn)
            if topic is not None:
                texts.append(topic.attributes.get("DeliveryPolicy"))
        for text in texts:
            if text:
                with contextlib.suppress(ValueError, AttributeError):
                    document = json.loads(text)
                    found = document.get("healthyRetryPolicy") or (document.get("http") or {}).get(
                        "defaultHealthyRetryPolicy"
                    )
                    if found:
                        return {**DEFAULT_HTTP_POLICY, **found}
        return DEFAULT_HTTP_POLICY

    @staticmethod
    def _http_request(
        subscription: Subscription, message: dict[str, Any]
    ) -> tuple[str, str, dict[str, str]]:
        headers = {
            "x-amz-sns-message-type": "Notification",
            "x-amz-sns-message-id": message["id"],
            "x-amz-sns-topic-arn": message["topic_arn"],
            "x-amz-sns-subscription-arn": subscription.arn,
            "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
        }
        if subscription.raw:
            headers["x-amz-sns-rawdelivery"] = "true"
            return subscription.endpoint, text_for(message, subscription.protocol), headers
        body = json.dumps(notification(message, subscription.arn, subscription.protocol))
        return subscription.endpoint, body, headers
