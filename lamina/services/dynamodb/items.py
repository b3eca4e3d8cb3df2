"""DynamoDB's item operations: PutItem, GetItem, UpdateItem, DeleteItem, Query, Scan,
BatchWriteItem, BatchGetItem, TransactWriteItems, TransactGetItems.

Each request's expressions are resolved once (expressions.py), its condition evaluated
on the item as stored, and every write goes through `Tables.write` (one transaction with
its stream records).
"""

from __future__ import annotations

from typing import Any

from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.services.dynamodb import values as v
from lamina.services.dynamodb.expressions import Expressions, holds
from lamina.services.dynamodb.keys import key_range
from lamina.services.dynamodb.tables import Table, Tables
from lamina.services.dynamodb.updates import apply, project

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
TRANSACT_LIMIT = 100
PAGE_BYTES = 1024 * 1024  # a Query or Scan page stops after about 1 MB


def not_found() -> AwsError:
    return AwsError("ResourceNotFoundException", "Requested resource not found", 400)


def condition_failed(item: v.Item | None, wanted: bool) -> AwsError:
    fields: dict[str, Any] = {}
    if wanted and item is not None:
        fields["Item"] = item
    return AwsError(
        "ConditionalCheckFailedException", "The conditional request failed", 400, fields=fields
    )


def expressions_of(params: dict[str, Any], used: tuple[str, ...]) -> Expressions:
    """The request's names and values, refused when no expression could use them."""
    present = [name for name in used if params.get(name)]
    if not present:
        if params.get("ExpressionAttributeNames") is not None:
            raise v.validation(
                "ExpressionAttributeNames can only be specified when using expressions"
            )
        if params.get("ExpressionAttributeValues") is not None:
            raise v.validation(
                "ExpressionAttributeValues can only be specified when using expressions"
            )
    return Expressions(
        params.get("ExpressionAttributeNames"), params.get("ExpressionAttributeValues")
    )


def capacity(params: dict[str, Any], table: Table, units: float = 1.0) -> dict[str, Any]:
    if params.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
        return {"ConsumedCapacity": {"TableName": table.name, "CapacityUnits": units}}
    return {}


class Items:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def _table(self, ctx: RequestContext, name: str) -> Table:
        table = self.tables.table(ctx.account, ctx.region, name)
        if table is None:
            raise not_found()
        return table

    # One item ------------------------------------------------------------------------------
    async def PutItem(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(ctx, params["TableName"])
        returns = params.get("ReturnValues") or "NONE"
        if returns not in ("NONE", "ALL_OLD"):
            raise v.validation("ReturnValues can only be ALL_OLD or NONE")
        exprs = expressions_of(params, ("ConditionExpression",))
        condition = self._condition(exprs, params)
        exprs.finish()
        item = self._check_item(table, params["Item"])
        key = table.key_of(item)
        old = self.tables.get(table, key)
        self._require(condition, old, params)
        self.tables.write([(table, key, old, item)])
        result: dict[str, Any] = capacity(params, table)
        if returns == "ALL_OLD" and old is not None:
            result["Attributes"] = old
        return result

    async def GetItem(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(ctx, params["TableName"])
        exprs = expressions_of(params, ("ProjectionExpression",))
        paths = (
            exprs.projection(params["ProjectionExpression"])
            if params.get("ProjectionExpression")
            else None
        )
        exprs.finish()
        item = self.tables.get(table, table.check_key(params["Key"]))
        result: dict[str, Any] = capacity(params, table, 0.5)
        if item is not None:
            result["Item"] = project(item, paths) if paths is not None else item
        return result

    async def DeleteItem(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(ctx, params["TableName"])
        returns = params.get("ReturnValues") or "NONE"
        if returns not in ("NONE", "ALL_OLD"):
            raise v.validation("ReturnValues can only be ALL_OLD or NONE")
        exprs = expressions_of(params, ("ConditionExpression",))
        condition = self._condition(exprs, params)
        exprs.finish()
        key = table.check_key(params["Key"])
        old = self.tables.get(table, key)
        self._require(condition, old, params)
        if old is not None:
            self.tables.write([(table, key, old, None)])
        result: dict[str, Any] = capacity(params, table)
        if returns == "ALL_OLD" and old is not None:
            result["Attributes"] = old
        return result

    async def UpdateItem(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(ctx, params["TableName"])
        returns = params.get("ReturnValues") or "NONE"
        exprs = expressions_of(params, ("UpdateExpression", "ConditionExpression"))
        actions = exprs.update(params["UpdateExpression"]) if params.get("UpdateExpression") else []
        condition = self._condition(exprs, params)
        exprs.finish()
        key = table.check_key(params["Key"])
        old = self.tables.get(table, key)
        self._require(condition, old, params)
        new = apply(actions, old if old is not None else dict(key), table.key_names)
        if v.item_size(new) > v.MAX_ITEM_BYTES:
            raise v.validation("Item size to update has exceeded the maximum allowed size")
        self.tables.write([(table, key, old, new)])
        result: dict[str, Any] = capacity(params, table)
        touched = {path[0] for _, entries in actions for path in _paths(entries)}
        shown: v.Item | None = None
        if returns == "ALL_OLD":
            shown = old
        elif returns == "ALL_NEW":
            shown = new
        elif returns == "UPDATED_OLD" and old is not None:
            shown = {k: old[k] for k in touched if k in old}
        elif returns == "UPDATED_NEW":
            shown = {k: new[k] for k in touched if k in new}
        if shown:
            result["Attributes"] = shown
        return result

    def _condition(self, exprs: Expressions, params: dict[str, Any]) -> Any:
        text = params.get("ConditionExpression")
        return exprs.condition(text, "ConditionExpression") if text is not None else None

    @staticmethod
    def _require(condition: Any, old: v.Item | None, params: dict[str, Any]) -> None:
        if condition is not None and not holds(condition, old or {}):
            wanted = params.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
            raise condition_failed(old, wanted)

    @staticmethod
    def _check_item(table: Table, raw: dict[str, Any]) -> v.Item:
        item = v.check_item(raw)
        for name in table.key_names:
            if name not in item:
                raise v.invalid(f"Missing the key {name} in the item")
            table.check_key({k: item[k] for k in table.key_names if k in item}, exact=False)
        if v.item_size(item) > v.MAX_ITEM_BYTES:
            raise v.validation("Item size has exceeded the maximum allowed size")
        return item

    # Many items ----------------------------------------------------------------------------
    async def Query(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(ctx, params["TableName"])
        self._no_index(table, params)
        exprs = expressions_of(
            params, ("KeyConditionExpression", "FilterExpression", "ProjectionExpression")
        )
        text = params.get("KeyConditionExpression")
        if not text:
            raise v.validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be "
                "specified in the request."
            )
        hash_value, low, high, check = key_range(
            table, exprs.condition(text, "KeyConditionExpression")
        )
        found = self.tables.query(
            table,
            hash_value,
            low,
            high,
            params.get("ScanIndexForward", True),
            self._start(table, params),
        )
        return self._page(table, params, exprs, (i for i in found if check(i)))

    async def Scan(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(ctx, params["TableName"])
        self._no_index(table, params)
        exprs = expressions_of(params, ("FilterExpression", "ProjectionExpression"))
        segments = params.get("TotalSegments")
        segment = params.get("Segment")
        if (segments is None) != (segment is None):
            raise v.validation(
                "The TotalSegments parameter is required but was not present in the request "
                "when Segment parameter is present"
                if segments is None
                else "The Segment parameter is required but was not present in the request "
                "when parameter TotalSegments is present"
            )
        if segments is not None and segment >= segments:
            raise v.validation(
                f"The Segment parameter is zero-based and must be less than parameter "
                f"TotalSegments: Segment: {segment} is not less than TotalSegments: {segments}"
            )
        found = self.tables.scan(table, self._start(table, params))
        if segments is not None:
            found = (
                i
                for i in found
                if v.partition_hash(i[table.hash_key]) * segments // 2**128 == segment
            )
        return self._page(table, params, exprs, found)

    @staticmethod
    def _no_index(table: Table, params: dict[str, Any]) -> None:
        if params.get("IndexName"):
            raise v.validation(
                f"The table does not have the specified index: {params['IndexName']}"
            )

    @staticmethod
    def _start(table: Table, params: dict[str, Any]) -> v.Item | None:
        start = params.get("ExclusiveStartKey")
        if not start:
            return None
        try:
            return table.check_key(start)
        except AwsError:
            raise v.validation(
                "The provided starting key is invalid: The provided key element does not "
                "match the schema"
            ) from None

    def _page(
        self, table: Table, params: dict[str, Any], exprs: Expressions, found: Any
    ) -> dict[str, Any]:
        text = params.get("FilterExpression")
        condition = exprs.condition(text, "FilterExpression") if text else None
        paths = (
            exprs.projection(params["ProjectionExpression"])
            if params.get("ProjectionExpression")
            else None
        )
        exprs.finish()
        limit = params.get("Limit")
        select = params.get("Select") or "ALL_ATTRIBUTES"
        items: list[v.Item] = []
        scanned = 0
        size = 0
        last: v.Item | None = None
        for item in found:
            scanned += 1
            size += v.item_size(item)
            if condition is None or holds(condition, item):
                items.append(item)
            if (limit is not None and scanned >= limit) or size >= PAGE_BYTES:
                last = item
                break
        result: dict[str, Any] = {"Count": len(items), "ScannedCount": scanned}
        if select != "COUNT":
            result["Items"] = [project(i, paths) if paths is not None else i for i in items]
        if last is not None:
            result["LastEvaluatedKey"] = table.key_of(last)
        result.update(capacity(params, table, max(1.0, scanned / 2)))
        return result

    async def BatchWriteItem(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        requests = params.get("RequestItems") or {}
        total = sum(len(r) for r in requests.values())
        if total > BATCH_WRITE_LIMIT:
            raise v.validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy "
                "constraint: Map value must satisfy constraint: [Member must have length less "
                "than or equal to 25, Member must have length greater than or equal to 1]"
            )
        changes = []
        for name, entries in requests.items():
            table = self._table(ctx, name)
            seen: set[tuple[bytes, bytes]] = set()
            for entry in entries:
                if "PutRequest" in entry:
                    item = self._check_item(table, entry["PutRequest"]["Item"])
                    key = table.key_of(item)
                else:
                    key = table.check_key(entry["DeleteRequest"]["Key"])
                    item = None
                where = table.storage_key(key)
                if where in seen:
                    raise v.validation("Provided list of item keys contains duplicates")
                seen.add(where)
                changes.append((table, key, item))
        self.tables.write(
            [(table, key, self.tables.get(table, key), item) for table, key, item in changes]
        )
        return {"UnprocessedItems": {}}

    async def BatchGetItem(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        requests = params.get("RequestItems") or {}
        if sum(len(r.get("Keys") or []) for r in requests.values()) > BATCH_GET_LIMIT:
            raise v.validation("Too many items requested for the BatchGetItem call")
        responses: dict[str, list[v.Item]] = {}
        for name, request in requests.items():
            table = self._table(ctx, name)
            exprs = expressions_of(request, ("ProjectionExpression",))
            paths = (
                exprs.projection(request["ProjectionExpression"])
                if request.get("ProjectionExpression")
                else None
            )
            exprs.finish()
            found = []
            seen: set[tuple[bytes, bytes]] = set()
            for raw in request.get("Keys") or []:
                key = table.check_key(raw)
                if table.storage_key(key) in seen:
                    raise v.validation("Provided list of item keys contains duplicates")
                seen.add(table.storage_key(key))
                item = self.tables.get(table, key)
                if item is not None:
                    found.append(project(item, paths) if paths is not None else item)
            responses[name] = found
        return {"Responses": responses, "UnprocessedKeys": {}}

    async def TransactWriteItems(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        entries = params.get("TransactItems") or []
        if len(entries) > TRANSACT_LIMIT:
            raise v.validation(
                "1 validation error detected: Value at 'transactItems' failed to satisfy "
                "constraint: Member must have length less than or equal to 100"
            )
        planned = []
        seen: set[tuple[int, bytes, bytes]] = set()
        for entry in entries:
            ((kind, request),) = entry.items()
            table = self._table(ctx, request["TableName"])
            fields = ("ConditionExpression", "UpdateExpression")
            exprs = expressions_of(request, fields)
            actions = exprs.update(request["UpdateExpression"]) if kind == "Update" else []
            condition = self._condition(exprs, request)
            exprs.finish()
            if kind == "Put":
                item: v.Item | None = self._check_item(table, request["Item"])
                assert item is not None
                key = table.key_of(item)
            else:
                key = table.check_key(request["Key"])
                item = None
            where = (table.id, *table.storage_key(key))
            if where in seen:
                raise v.validation(
                    "Transaction request cannot include multiple operations on one item"
                )
            seen.add(where)
            planned.append((kind, request, table, key, item, actions, condition))
        reasons: list[dict[str, Any]] = []
        changes = []
        for kind, request, table, key, item, actions, condition in planned:
            old = self.tables.get(table, key)
            if condition is not None and not holds(condition, old or {}):
                reason: dict[str, Any] = {
                    "Code": "ConditionalCheckFailed",
                    "Message": "The conditional request failed",
                }
                if request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and old:
                    reason["Item"] = old
                reasons.append(reason)
                continue
            reasons.append({"Code": "None"})
            if kind == "Put":
                changes.append((table, key, old, item))
            elif kind == "Delete":
                changes.append((table, key, old, None))
            elif kind == "Update":
                changes.append((table, key, old, apply(actions, old or dict(key), table.key_names)))
        if any(r["Code"] != "None" for r in reasons):
            codes = ", ".join(r["Code"] for r in reasons)
            raise AwsError(
                "TransactionCanceledException",
                f"Transaction cancelled, please refer cancellation reasons for specific reasons "
                f"[{codes}]",
                400,
                fields={"CancellationReasons": reasons},
            )
        self.tables.write(c for c in changes if c[2] is not None or c[3] is not None)
        return {}

    async def TransactGetItems(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        responses: list[dict[str, Any]] = []
        for entry in params.get("TransactItems") or []:
            request = entry["Get"]
            table = self._table(ctx, request["TableName"])
            exprs = expressions_of(request, ("ProjectionExpression",))
            paths = (
                exprs.projection(request["ProjectionExpression"])
                if request.get("ProjectionExpression")
                else None
            )
            exprs.finish()
            item = self.tables.get(table, table.check_key(request["Key"]))
            if item is None:
                responses.append({})
            else:
                responses.append({"Item": project(item, paths) if paths is not None else item})
        return {"Responses": responses}


def _paths(entries: list[Any]) -> list[tuple[Any, ...]]:
    return [e if isinstance(e[0], str | int) else e[0] for e in entries]
