"""Sending events to a rule's targets, and firing scheduled rules.

Each target gets the event as its Input / InputPath / InputTransformer says
(transform.py): a function as an async invoke through its resource policy (its event
queue then owns throttles, retries and its own DLQ), a queue as a SendMessage, a topic as
a Publish — each on disk at the target before PutEvents answers. What a target refuses
for good (no such resource, no permission for events.amazonaws.com, too large) is not
retried, as on AWS: the event goes to the target's dead-letter queue, if it has one. Any
other failure is retried with exponential backoff while the target's RetryPolicy allows
(185 attempts, 24 hours by default), from the store's `retries` table: a restart loses
none, and of a cluster's nodes one makes each retry (a lease, compared and set).

Schedules run on the clock: a rule's timeline starts at its anchor (when its schedule was
set) and runs 1/scale times as fast as real time, so `--time-scale` speeds them. Each
firing is recorded on the rule (LastFired); after a restart a schedule that missed one
or more firings fires once, then keeps its cadence.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import json
import logging
import random
import uuid
from typing import Any

from lamina.clock import Clock
from lamina.deliveries import (
    Delivery,
    FunctionInvoker,
    MetricSink,
    QueueSender,
    TopicPublisher,
)
from lamina.services.events.rules import Rule, Rules
from lamina.services.events.store import Retry
from lamina.services.events.transform import payload
from lamina.tasks import stop_task

log = logging.getLogger("lamina.events")

SERVICE = "events.amazonaws.com"
DEFAULT_ATTEMPTS = 185
DEFAULT_MAX_AGE = 86400.0
RETRY_LEASE = 30.0  # real seconds a node holds a retry it is making (whatever the scale)


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kind_of(arn: str) -> str | None:
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        return None
    if parts[2] == "lambda" and parts[5] == "function":
        return "lambda"
    if parts[2] in ("sqs", "sns"):
        return parts[2]
    return None


class Dispatcher:
    def __init__(
        self,
        rules: Rules,
        clock: Clock,
        functions: FunctionInvoker,
        queues: QueueSender,
        topics: TopicPublisher,
        metrics: MetricSink | None = None,
    ) -> None:
        self.metrics = metrics
        self.rules = rules
        self.clock = clock
        self.functions = functions
        self.queues = queues
        self.topics = topics
        self._due: list[tuple[float, int, Rule, int]] = []  # (real time, seq, rule, generation)
        self._retries: list[tuple[float, int, Retry]] = []  # (real time, seq, retry)
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.fired = 0  # schedule firings, for tests and stats
        rules.on_reload.append(self._reloaded)

    # Lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        now = self.clock.wall()
        for rule in self.rules.scheduled():
            if not self._catch_up(rule, now):
                self.reschedule(rule)
        for retry in self.rules.store.retries():
            heapq.heappush(self._retries, (retry.due, next(self._seq), retry))
        self._scheduler = asyncio.get_running_loop().create_task(self._run_schedules())

    async def close(self) -> None:
        await stop_task(self._scheduler)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # Events ------------------------------------------------------------------------------
    async def put(self, account: str, region: str, bus: str, events: list[dict[str, Any]]) -> None:
        """Route each event to the enabled rules of `bus` whose pattern it matches, all
        together: their writes share commits (EventBridge promises no order)."""
        rules = [r for r in self.rules.rules_of(account, region, bus).values()
                 if r.enabled and r.pattern is not None]  # fmt: skip
        routes = []
        for event in events:
            matched = [r for r in rules if r.pattern is not None and r.pattern.matches(event)]
            if matched:
                self._count(account, region, (("EventBusName", bus),), "MatchedEvents")
            routes += [self.route(rule, event) for rule in matched]
        await asyncio.gather(*routes)

    @staticmethod
    def _bus_of(arn: str) -> tuple[str, str, str] | None:
        """(account, region, name) of an event bus ARN."""
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "events" or not parts[5].startswith("event-bus/"):
            return None
        return parts[4], parts[3], parts[5].split("/", 1)[1]

    def bus_exists(self, arn: str) -> bool:
        found = self._bus_of(arn)
        return found is not None and self.rules.bus(*found) is not None

    async def put_internal(
        self, arn: str, source: str, detail_type: str, detail: Any, resources: list[str]
    ) -> bool:
        """An event from AWS's side (a Lambda destination) onto the bus `arn`."""
        found = self._bus_of(arn)
        if found is None or self.rules.bus(*found) is None:
            return False
        account, region, bus = found
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": account,
            "time": iso(self.clock.wall()),
            "region": region,
            "resources": resources,
            "detail": detail,
        }
        await self.put(account, region, bus, [event])
        return True

    async def route(self, rule: Rule, event: dict[str, Any]) -> None:
        """Send `event` to every target of `rule`."""
        accepted = self.clock.wall()
        targets = list(rule.targets.values())
        self.count(rule, "TriggeredRules")
        await asyncio.gather(*(self._send(rule, t, event, accepted, attempt=1) for t in targets))

    async def _send(
        self,
        rule: Rule,
        target: dict[str, Any],
        event: dict[str, Any],
        accepted: float,
        attempt: int,
        retry: Retry | None = None,
    ) -> None:
        try:
            text = payload(target, event, rule.arn, rule.name)
            outcome = await self._deliver(rule, target, text, event)
        except Exception:
            log.exception("delivering an event to %s failed", target.get("Arn"))
            outcome = Delivery.FAILED
        if outcome is Delivery.ACCEPTED:
            self.count(rule, "Invocations")
            if retry is not None:
                self.rules.store.retry_done(retry.id)
            return
        policy = target.get("RetryPolicy") or {}
        attempts = int(policy.get("MaximumRetryAttempts", DEFAULT_ATTEMPTS))
        max_age = float(policy.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE))
        age = (self.clock.wall() - accepted) / self.clock.scale
        if outcome is Delivery.FAILED and attempt <= attempts and age < max_age:
            delay = min(300.0, 2.0 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
            due = self.clock.wall() + self.clock.platform_delay(delay)
            if retry is None:
                retry = Retry(0, rule.id, str(target["Id"]), event, accepted, attempt + 1, due)
                retry.id = self.rules.store.add_retry(retry)
            else:
                retry.attempt, retry.due = attempt + 1, due
                self.rules.store.retry_later(retry)
            heapq.heappush(self._retries, (due, next(self._seq), retry))
            self._wake.set()
            return
        if retry is not None:
            self.rules.store.retry_done(retry.id)
        self.count(rule, "FailedInvocations")
        log.warning(
            "rule %s could not deliver to %s (%s)", rule.arn, target.get("Arn"), outcome.value
        )
        self._dead_letter(rule, target, event, outcome)

    async def _deliver(
        self, rule: Rule, target: dict[str, Any], text: str, event: dict[str, Any]
    ) -> Delivery:
        arn = str(target["Arn"])
        kind = kind_of(arn)
        if kind == "lambda":
            return await self.functions.invoke_async(
                arn, text.encode(), service=SERVICE, source_arn=rule.arn,
                source_account=rule.account,
            )  # fmt: skip
        if kind == "sqs":
            group = (target.get("SqsParameters") or {}).get("MessageGroupId")
            return self.queues.send_as_service(
                arn, text, service=SERVICE, source_arn=rule.arn, source_account=rule.account,
                group=group, dedup=str(event.get("id")),
            )  # fmt: skip
        if kind == "sns":
            return await self.topics.publish_as_service(
                arn, text, service=SERVICE, source_arn=rule.arn, source_account=rule.account
            )
        return Delivery.MISSING

    def _dead_letter(
        self, rule: Rule, target: dict[str, Any], event: dict[str, Any], outcome: Delivery
    ) -> None:
        arn = (target.get("DeadLetterConfig") or {}).get("Arn")
        if not arn:
            return
        codes = {
            Delivery.MISSING: ("ResourceNotFound", "The target does not exist."),
            Delivery.DENIED: ("AccessDenied", "EventBridge may not deliver to the target."),
            Delivery.TOO_LARGE: ("PayloadTooLarge", "The event is too large for the target."),
            Delivery.FAILED: ("RetriesExhausted", "The target's retry policy was exhausted."),
        }  # fmt: skip
        code, message = codes.get(outcome, ("Unknown", "Delivery failed."))
        attributes = {
            "RULE_ARN": {"DataType": "String", "StringValue": rule.arn},
            "TARGET_ARN": {"DataType": "String", "StringValue": str(target["Arn"])},
            "ERROR_CODE": {"DataType": "String", "StringValue": code},
            "ERROR_MESSAGE": {"DataType": "String", "StringValue": message},
        }
        sent = self.queues.send_as_service(
            arn, json.dumps(event), service=SERVICE, source_arn=rule.arn,
            source_account=rule.account, attributes=attributes,
        )  # fmt: skip
        if sent is not Delivery.ACCEPTED:
            log.warning("dead-letter queue %s refused an event (%s)", arn, sent.value)
        else:
            self.count(rule, "DeadLetterInvocations")

    def count(self, rule: Rule, name: str) -> None:
        """A figure of the rule's, in CloudWatch's AWS/Events namespace."""
        dims = (("EventBusName", rule.bus), ("RuleName", rule.name))
        self._count(rule.account, rule.region, dims, name)

    def _count(
        self, account: str, region: str, dims: tuple[tuple[str, str], ...], name: str
    ) -> None:
        if self.metrics is not None:
            self.metrics.put(account, region, "AWS/Events", name, dims, 1.0, unit="Count")

    def _retry_due(self, now: float) -> None:
        """Make the retries due by `now` that this node claims."""
        while self._retries and self._retries[0][0] <= now:
            due, _, retry = heapq.heappop(self._retries)
            if due != retry.due:
                continue  # planned again since (a later attempt, or a lease that ended)
            lease = now + RETRY_LEASE
            if not self.rules.store.take_retry(retry, lease):
                continue  # another node makes it (or made it)
            found = self._rule_by_id(retry.rule_id)
            target = found.targets.get(retry.target_id) if found is not None else None
            if found is None or target is None:  # the rule or the target went away
                self.rules.store.retry_done(retry.id)
                continue
            heapq.heappush(self._retries, (lease, next(self._seq), retry))  # if it dies
            self.count(found, "RetryInvocationAttempts")
            self._spawn(
                self._send(found, target, retry.event, retry.accepted, retry.attempt, retry)
            )

    def _rule_by_id(self, rule_id: int) -> Rule | None:
        for rules in self.rules.rules.values():
            for rule in rules.values():
                if rule.id == rule_id:
                    return rule
        return None

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Schedules ---------------------------------------------------------------------------
    def _timeline(self, rule: Rule, real: float) -> float:
        """Real wall time → the rule's schedule timeline (runs 1/scale as fast)."""
        anchor = float(rule.record.get("Anchor", real))
        return anchor + (real - anchor) / self.clock.scale

    def _real(self, rule: Rule, moment: float) -> float:
        anchor = float(rule.record.get("Anchor", moment))
        return anchor + (moment - anchor) * self.clock.scale

    def _catch_up(self, rule: Rule, now: float) -> bool:
        """A schedule that missed firings while Lamina was down fires once, now: one
        entry, due at once; its firing plans the next (so a regular firing that comes due
        while the server is still starting is not a second one)."""
        if rule.schedule is None or not rule.enabled:
            return False
        last = rule.record.get("LastFired", rule.record.get("Anchor"))
        if last is None:
            return False
        missed = rule.schedule.last_until(self._timeline(rule, now), float(last))
        if missed is None:
            return False
        # Due at once, for the last moment missed: the same moment on every node.
        heapq.heappush(
            self._due, (self._real(rule, missed), next(self._seq), rule, rule.generation)
        )
        return True

    def _reloaded(self) -> None:
        """Another node changed buses or rules: this node's were read again (new objects:
        what was planned for the old ones is dropped as it comes due)."""
        for rule in self.rules.scheduled():
            self.reschedule(rule)

    def reschedule(self, rule: Rule) -> None:
        """(Re)plan the rule's next firing; call after any change to the rule."""
        if rule.schedule is None or not rule.enabled:
            return
        after = max(
            self._timeline(rule, self.clock.wall()), float(rule.record.get("LastFired") or 0.0)
        )
        moment = rule.schedule.next_after(after)
        if moment is None:
            return
        entry = (self._real(rule, moment), next(self._seq), rule, rule.generation)
        heapq.heappush(self._due, entry)
        self._wake.set()

    def step(self, now: float) -> None:
        """Fire every rule due by `now` (real wall time) and plan its next firing; make
        the retries due."""
        self._retry_due(now)
        while self._due and self._due[0][0] <= now:
            due, _, rule, generation = heapq.heappop(self._due)
            if generation != rule.generation or not rule.enabled:
                continue  # the rule changed or went away since this was planned
            if self.rules.rule(rule.account, rule.region, rule.bus, rule.name) is not rule:
                continue
            moment = self._timeline(rule, due)
            if moment <= float(rule.record.get("LastFired") or 0.0):
                continue  # fired for this moment (or a later one) already
            self._fire(rule, moment)
            self.reschedule(rule)

    async def _run_schedules(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.wall()
            self.step(now)
            next_due = min([q[0][0] for q in (self._due, self._retries) if q], default=None)
            timeout = max(0.0, next_due - now) if next_due is not None else None
            # asyncio.timeout, not wait_for: a cancellation that comes as the wake-up
            # does is never lost (Python 3.11's wait_for can swallow it).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _fire(self, rule: Rule, moment: float) -> None:
        """Send the rule's Scheduled Event, unless another node sharing the database has
        claimed this moment; LastFired is stored once its targets have it (a crash before
        that fires it again at the next start: at least once)."""
        rule.record["LastFired"] = moment
        if not self.rules.store.claim(rule.id, moment):
            return
        self.fired += 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": rule.account,
            "time": iso(moment),
            "region": rule.region,
            "resources": [rule.arn],
            "detail": {},
        }
        self._spawn(self._fired(rule, event))

    async def _fired(self, rule: Rule, event: dict[str, Any]) -> None:
        await self.route(rule, event)
        if self.rules.rule(rule.account, rule.region, rule.bus, rule.name) is rule:
            self.rules.save_rule(rule, announce=False)
