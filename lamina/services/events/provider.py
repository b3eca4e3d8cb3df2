"""The EventBridge operations (botocore's `events` model, json 1.1): event buses, rules,
targets, PutEvents and TestEventPattern. State changes go through rules.py, deliveries
and schedules through dispatch.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.patterns import EVENTBRIDGE, PatternError, compile_pattern
from lamina.services.events import schedule
from lamina.services.events.dispatch import Dispatcher, iso, kind_of
from lamina.services.events.rules import DEFAULT_BUS, Bus, Rule, Rules
from lamina.services.events.transform import TransformError, check_path, check_transformer

BUS_NAME = re.compile(r"[/.\-_A-Za-z0-9]{1,256}")
RULE_NAME = re.compile(r"[.\-_A-Za-z0-9]{1,64}")
MAX_TARGETS = 5
ENTRIES_LIMIT = 262_144
PAGE = 100


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message, 400)


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message, 400)


def _tags(entries: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in entries or []}


def _page(items: list[Any], token: str | None, limit: int | None) -> tuple[list[Any], str | None]:
    start = int(token) if token and token.isdigit() else 0
    size = limit or PAGE
    chunk = items[start : start + size]
    return chunk, str(start + size) if start + size < len(items) else None


class EventsProvider:
    def __init__(self, rules: Rules, dispatcher: Dispatcher, clock: Clock) -> None:
        self.rules = rules
        self.dispatcher = dispatcher
        self.clock = clock

    # Lookups -----------------------------------------------------------------------------
    @staticmethod
    def _bus_name(value: str | None) -> str:
        name = value or DEFAULT_BUS
        if name.startswith("arn:"):
            name = name.split(":event-bus/", 1)[-1]
        return name

    def _bus(self, ctx: RequestContext, value: str | None) -> Bus:
        name = self._bus_name(value)
        bus = self.rules.bus(ctx.account, ctx.region, name)
        if bus is None:
            raise not_found(f"Event bus {name} does not exist.")
        return bus

    def _rule(self, ctx: RequestContext, name: str, bus_value: str | None) -> Rule:
        bus = self._bus(ctx, bus_value)
        rule = self.rules.rule(ctx.account, ctx.region, bus.name, name)
        if rule is None:
            raise not_found(f"Rule {name} does not exist on EventBus {bus.name}.")
        return rule

    # Event buses -------------------------------------------------------------------------
    async def CreateEventBus(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Name"]
        if not BUS_NAME.fullmatch(name) or "/" in name:
            raise validation(f"Event bus name {name} is not valid.")
        if self.rules.bus(ctx.account, ctx.region, name) is not None:
            raise AwsError("ResourceAlreadyExistsException", f"Event bus {name} already exists.")
        now = self.clock.wall()
        record: dict[str, Any] = {
            "Description": params.get("Description"),
            "Tags": _tags(params.get("Tags")),
            "CreationTime": now,
            "LastModifiedTime": now,
        }
        bus = self.rules.create_bus(ctx.account, ctx.region, name, record)
        return {"EventBusArn": bus.arn}

    async def DeleteEventBus(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Name"]
        if name == DEFAULT_BUS:
            raise validation("Cannot delete event bus default.")
        bus = self.rules.bus(ctx.account, ctx.region, name)
        if bus is not None:  # deleting a bus that is gone succeeds, as on AWS
            self.rules.delete_bus(bus)
        return {}

    def _shown_bus(self, bus: Bus) -> dict[str, Any]:
        shown: dict[str, Any] = {"Name": bus.name, "Arn": bus.arn}
        if bus.record.get("Description"):
            shown["Description"] = bus.record["Description"]
        if bus.record.get("CreationTime"):
            shown["CreationTime"] = bus.record["CreationTime"]
            shown["LastModifiedTime"] = bus.record["LastModifiedTime"]
        return shown

    async def DescribeEventBus(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._shown_bus(self._bus(ctx, params.get("Name")))

    async def ListEventBuses(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        buses = [
            self._shown_bus(b)
            for b in self.rules.buses_of(ctx.account, ctx.region)
            if b.name.startswith(prefix)
        ]
        chunk, token = _page(buses, params.get("NextToken"), params.get("Limit"))
        result: dict[str, Any] = {"EventBuses": chunk}
        if token:
            result["NextToken"] = token
        return result

    # Rules -------------------------------------------------------------------------------
    async def PutRule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Name"]
        bus = self._bus(ctx, params.get("EventBusName"))
        pattern, expression = params.get("EventPattern"), params.get("ScheduleExpression")
        if not pattern and not expression:
            raise validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        if expression:
            if bus.name != DEFAULT_BUS:
                raise validation("ScheduleExpression is supported only on the default event bus.")
            try:
                schedule.parse(expression)
            except schedule.ScheduleError:
                raise validation("Parameter ScheduleExpression is not valid.") from None
        if pattern:
            try:
                compile_pattern(pattern, EVENTBRIDGE)
            except PatternError as exc:
                raise AwsError(
                    "InvalidEventPatternException", f"Event pattern is not valid. Reason: {exc}"
                ) from None
        state = params.get("State") or "ENABLED"
        existing = self.rules.rule(ctx.account, ctx.region, bus.name, name)
        record: dict[str, Any] = dict(existing.record) if existing else {"Targets": {}}
        record.update(
            {
                "EventPattern": pattern,
                "ScheduleExpression": expression,
                "State": state,
                "Description": params.get("Description"),
                "RoleArn": params.get("RoleArn"),
            }
        )
        if not existing or existing.record.get("ScheduleExpression") != expression:
            record["Anchor"] = self.clock.wall()  # a new schedule counts from now
            record.pop("LastFired", None)
        if params.get("Tags"):
            record["Tags"] = {**record.get("Tags", {}), **_tags(params.get("Tags"))}
        rule = self.rules.put_rule(ctx.account, ctx.region, bus.name, name, record)
        self.dispatcher.reschedule(rule)
        return {"RuleArn": rule.arn}

    def _shown_rule(self, rule: Rule) -> dict[str, Any]:
        shown: dict[str, Any] = {"Name": rule.name, "Arn": rule.arn}
        for key in ("EventPattern", "ScheduleExpression", "State", "Description", "RoleArn"):
            if rule.record.get(key):
                shown[key] = rule.record[key]
        shown["EventBusName"] = rule.bus
        return shown

    async def DescribeRule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(ctx, params["Name"], params.get("EventBusName"))
        return {**self._shown_rule(rule), "CreatedBy": rule.account}

    async def ListRules(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._bus(ctx, params.get("EventBusName"))
        prefix = params.get("NamePrefix") or ""
        rules = self.rules.rules_of(ctx.account, ctx.region, bus.name)
        shown = [self._shown_rule(r) for n, r in sorted(rules.items()) if n.startswith(prefix)]
        chunk, token = _page(shown, params.get("NextToken"), params.get("Limit"))
        result: dict[str, Any] = {"Rules": chunk}
        if token:
            result["NextToken"] = token
        return result

    async def DeleteRule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._bus(ctx, params.get("EventBusName"))
        rule = self.rules.rule(ctx.account, ctx.region, bus.name, params["Name"])
        if rule is None:
            return {}
        if rule.targets:
            raise validation("Rule can't be deleted since it has targets.")
        self.rules.delete_rule(rule)
        return {}

    async def _set_state(self, ctx: RequestContext, params: dict[str, Any], state: str) -> None:
        rule = self._rule(ctx, params["Name"], params.get("EventBusName"))
        if rule.record.get("State") != state:
            rule.record["State"] = state
            rule.generation += 1
            if state == "ENABLED" and rule.schedule is not None:
                rule.record["LastFired"] = self.dispatcher._timeline(rule, self.clock.wall())
            self.rules.save_rule(rule)
            self.dispatcher.reschedule(rule)

    async def EnableRule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._set_state(ctx, params, "ENABLED")
        return {}

    async def DisableRule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._set_state(ctx, params, "DISABLED")
        return {}

    # Targets -----------------------------------------------------------------------------
    @staticmethod
    def _check_target(target: dict[str, Any]) -> str | None:
        """Why the target cannot be put, or None."""
        given = [k for k in ("Input", "InputPath", "InputTransformer") if target.get(k)]
        if len(given) > 1:
            return "Only one of Input, InputPath, or InputTransformer must be provided."
        if kind_of(str(target.get("Arn", ""))) is None:
            return f"Lamina does not deliver to the target {target.get('Arn')}."
        try:
            if target.get("Input"):
                json.loads(target["Input"])
            if target.get("InputPath"):
                check_path(target["InputPath"])
            if target.get("InputTransformer"):
                check_transformer(target["InputTransformer"])
        except ValueError as exc:
            return f"Parameter(s) of target {target.get('Id')} are not valid. Reason: {exc}"
        except TransformError as exc:
            return f"Parameter(s) of target {target.get('Id')} are not valid. Reason: {exc}"
        return None

    async def PutTargets(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(ctx, params["Rule"], params.get("EventBusName"))
        targets = list(params.get("Targets") or [])
        new_ids = {t["Id"] for t in targets} - set(rule.targets)
        if len(rule.targets) + len(new_ids) > MAX_TARGETS:
            raise AwsError(
                "LimitExceededException",
                "The requested resource exceeds the maximum number allowed.",
            )
        failed = []
        for target in targets:
            problem = self._check_target(target)
            if problem is not None:
                failed.append(
                    {"TargetId": target["Id"], "ErrorCode": "ValidationException",
                     "ErrorMessage": problem}
                )  # fmt: skip
                continue
            rule.targets[target["Id"]] = target
        self.rules.save_rule(rule)
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    async def RemoveTargets(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(ctx, params["Rule"], params.get("EventBusName"))
        failed = []
        for target_id in params.get("Ids") or []:
            if rule.targets.pop(target_id, None) is None:
                failed.append(
                    {"TargetId": target_id, "ErrorCode": "ResourceNotFoundException",
                     "ErrorMessage": f"Target {target_id} does not exist."}
                )  # fmt: skip
        self.rules.save_rule(rule)
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    async def ListTargetsByRule(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        rule = self._rule(ctx, params["Rule"], params.get("EventBusName"))
        chunk, token = _page(
            list(rule.targets.values()), params.get("NextToken"), params.get("Limit")
        )
        result: dict[str, Any] = {"Targets": chunk}
        if token:
            result["NextToken"] = token
        return result

    async def ListRuleNamesByTarget(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bus = self._bus(ctx, params.get("EventBusName"))
        arn = params["TargetArn"]
        names = [
            name
            for name, rule in sorted(self.rules.rules_of(ctx.account, ctx.region, bus.name).items())
            if any(t.get("Arn") == arn for t in rule.targets.values())
        ]
        chunk, token = _page(names, params.get("NextToken"), params.get("Limit"))
        result: dict[str, Any] = {"RuleNames": chunk}
        if token:
            result["NextToken"] = token
        return result

    # Events ------------------------------------------------------------------------------
    def _event(self, ctx: RequestContext, entry: dict[str, Any]) -> dict[str, Any] | AwsError:
        """The event an entry makes, or its error (ErrorCode, ErrorMessage)."""
        for field in ("Source", "DetailType", "Detail"):
            if not entry.get(field):
                return AwsError(
                    "InvalidArgument",
                    f"Parameter {field} is not valid. Reason: {field} is a required argument.",
                )
        try:
            detail = json.loads(entry["Detail"])
        except ValueError:
            detail = None
        if not isinstance(detail, dict):
            return AwsError("MalformedDetail", "Detail is malformed.")
        moment = entry.get("Time")
        seconds = self.clock.wall()
        if isinstance(moment, dt.datetime):
            seconds = moment.timestamp()
        elif isinstance(moment, int | float):
            seconds = float(moment)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": ctx.account,
            "time": iso(seconds),
            "region": ctx.region,
            "resources": list(entry.get("Resources") or []),
            "detail": detail,
        }

    async def PutEvents(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        entries = list(params.get("Entries") or [])
        size = sum(len(json.dumps(e, default=str)) for e in entries)
        if size > ENTRIES_LIMIT:
            raise validation("Total size of the entries in the request is over the limit.")
        results: list[dict[str, Any]] = []
        by_bus: dict[str, list[dict[str, Any]]] = {}
        failed = 0
        for entry in entries:
            made = self._event(ctx, entry)
            bus_name = self._bus_name(entry.get("EventBusName"))
            if not isinstance(made, AwsError) and (
                self.rules.bus(ctx.account, ctx.region, bus_name) is None
            ):
                made = AwsError(
                    "ResourceNotFoundException", f"Event bus {bus_name} does not exist."
                )
            if isinstance(made, AwsError):
                failed += 1
                results.append({"ErrorCode": made.code, "ErrorMessage": made.message})
                continue
            by_bus.setdefault(bus_name, []).append(made)
            results.append({"EventId": made["id"]})
        for bus_name, events in by_bus.items():
            await self.dispatcher.put(ctx.account, ctx.region, bus_name, events)
        return {"FailedEntryCount": failed, "Entries": results}

    async def TestEventPattern(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        try:
            pattern = compile_pattern(params["EventPattern"], EVENTBRIDGE)
        except PatternError as exc:
            raise AwsError(
                "InvalidEventPatternException", f"Event pattern is not valid. Reason: {exc}"
            ) from None
        try:
            event = json.loads(params["Event"])
        except ValueError:
            event = None
        if not isinstance(event, dict):
            raise validation("Parameter Event is not valid.")
        missing = [k for k in ("id", "account", "source", "time", "region", "detail-type")
                   if k not in event]  # fmt: skip
        if missing:
            raise validation(
                f"Parameter Event is not valid. Reason: Provided Event is missing required "
                f"field(s): {', '.join(missing)}"
            )
        return {"Result": pattern.matches(event)}

    # Tags --------------------------------------------------------------------------------
    def _tagged(self, ctx: RequestContext, arn: str) -> tuple[dict[str, Any], Bus | Rule]:
        if ":event-bus/" in arn:
            bus = self.rules.bus(ctx.account, ctx.region, arn.split(":event-bus/", 1)[1])
            if bus is not None and bus.arn == arn:
                return bus.record, bus
        if ":rule/" in arn:
            path = arn.split(":rule/", 1)[1]
            bus_name, _, name = path.rpartition("/")
            rule = self.rules.rule(ctx.account, ctx.region, bus_name or DEFAULT_BUS, name)
            if rule is not None and rule.arn == arn:
                return rule.record, rule
        raise not_found(f"Resource {arn} does not exist.")

    def _save(self, owner: Bus | Rule) -> None:
        if isinstance(owner, Rule):
            self.rules.save_rule(owner)
        else:
            self.rules.save_bus(owner)

    async def TagResource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record, owner = self._tagged(ctx, params["ResourceARN"])
        record["Tags"] = {**record.get("Tags", {}), **_tags(params.get("Tags"))}
        self._save(owner)
        return {}

    async def UntagResource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record, owner = self._tagged(ctx, params["ResourceARN"])
        tags = record.get("Tags", {})
        for key in params.get("TagKeys") or []:
            tags.pop(key, None)
        record["Tags"] = tags
        self._save(owner)
        return {}

    async def ListTagsForResource(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record, _ = self._tagged(ctx, params["ResourceARN"])
        return {"Tags": [{"Key": k, "Value": v} for k, v in record.get("Tags", {}).items()]}
