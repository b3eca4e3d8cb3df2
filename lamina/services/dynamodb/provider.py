"""The DynamoDB operations (botocore's `dynamodb` model, json 1.0): the table operations
here, the item operations in items.py, gathered into the one object the gateway
dispatches to. Global and local secondary indexes are refused with a clear message.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.services.dynamodb import values as v
from lamina.services.dynamodb.items import Items, not_found
from lamina.services.dynamodb.streams import VIEW_TYPES, partitions_for
from lamina.services.dynamodb.tables import Table, Tables

LIST_LIMIT = 100
TABLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:dynamodb:([^:]+):(\d{12}):table/([^/]+)")
ITEM_OPERATIONS = (
    "PutItem",
    "GetItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchWriteItem",
    "BatchGetItem",
    "TransactWriteItems",
    "TransactGetItems",
)


def in_use(message: str) -> AwsError:
    return AwsError("ResourceInUseException", message, 400)


class DynamoDBProvider:
    def __init__(self, tables: Tables, clock: Clock) -> None:
        self.tables = tables
        self.clock = clock
        items = Items(tables)
        for name in ITEM_OPERATIONS:
            setattr(self, name, getattr(items, name))

    def _table(self, ctx: RequestContext, name: str) -> Table:
        table = self.tables.table(ctx.account, ctx.region, name)
        if table is None:
            raise AwsError(
                "ResourceNotFoundException",
                f"Requested resource not found: Table: {name} not found",
                400,
            )
        return table

    # Descriptions ----------------------------------------------------------------------------
    def describe(self, table: Table, status: str = "ACTIVE") -> dict[str, Any]:
        record = table.record
        count, size = self.tables.store.count(table.id)
        throughput = record.get("ProvisionedThroughput") or {}
        description: dict[str, Any] = {
            "AttributeDefinitions": record["AttributeDefinitions"],
            "TableName": table.name,
            "KeySchema": record["KeySchema"],
            "TableStatus": status,
            "CreationDateTime": dt.datetime.fromtimestamp(record["created"], dt.UTC),
            "ProvisionedThroughput": {
                "NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": throughput.get("ReadCapacityUnits", 0),
                "WriteCapacityUnits": throughput.get("WriteCapacityUnits", 0),
            },
            "TableSizeBytes": size,
            "ItemCount": count,
            "TableArn": table.arn,
            "TableId": record["TableId"],
            "DeletionProtectionEnabled": False,
        }
        if record["BillingMode"] == "PAY_PER_REQUEST":
            description["BillingModeSummary"] = {
                "BillingMode": "PAY_PER_REQUEST",
                "LastUpdateToPayPerRequestDateTime": description["CreationDateTime"],
            }
        stream = table.stream
        if stream is not None:
            description["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream.view,
            }
        if table.streams:
            description["LatestStreamLabel"] = table.streams[-1].label
            description["LatestStreamArn"] = table.streams[-1].arn
        return description

    # Tables ----------------------------------------------------------------------------------
    async def CreateTable(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TableName"]
        for member in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if params.get(member):
                raise v.validation(f"{member} are not supported by Lamina yet.")
        schema = list(params["KeySchema"])
        if schema[0]["KeyType"] != "HASH":
            raise v.validation(
                "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
            )
        if len(schema) == 2 and schema[1]["KeyType"] != "RANGE":
            raise v.validation(
                "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type"
            )
        if len(schema) == 2 and schema[0]["AttributeName"] == schema[1]["AttributeName"]:
            raise v.invalid(
                "Both the Hash Key and the Range Key element in the KeySchema have the same name"
            )
        definitions = list(params["AttributeDefinitions"])
        defined = [d["AttributeName"] for d in definitions]
        keys = [k["AttributeName"] for k in schema]
        missing = [k for k in keys if k not in defined]
        if missing:
            raise v.invalid(
                "Some index key attributes are not defined in AttributeDefinitions. Keys: "
                f"[{', '.join(missing)}], AttributeDefinitions: [{', '.join(sorted(defined))}]"
            )
        if len(defined) != len(keys):
            raise v.invalid(
                "Number of attributes in KeySchema does not exactly match number of attributes "
                "defined in AttributeDefinitions"
            )
        billing = params.get("BillingMode") or "PROVISIONED"
        throughput = params.get("ProvisionedThroughput")
        self._check_billing(billing, throughput)
        spec = self._stream_spec(params.get("StreamSpecification"))
        if self.tables.table(ctx.account, ctx.region, name) is not None:
            raise in_use(f"Table already exists: {name}")
        record = {
            "KeySchema": schema,
            "AttributeDefinitions": definitions,
            "BillingMode": billing,
            "ProvisionedThroughput": dict(throughput or {}),
            "StreamSpecification": spec,
            "created": self.clock.wall(),
            "tags": {t["Key"]: t["Value"] for t in params.get("Tags") or []},
            "TableId": str(uuid.uuid4()),
        }
        table = self.tables.create(ctx.account, ctx.region, name, record)
        return {"TableDescription": self.describe(table, "CREATING")}

    @staticmethod
    def _check_billing(billing: str, throughput: dict[str, Any] | None) -> None:
        if billing == "PROVISIONED" and not throughput:
            raise v.invalid(
                "ReadCapacityUnits and WriteCapacityUnits must both be specified when "
                "BillingMode is PROVISIONED"
            )
        if billing == "PAY_PER_REQUEST" and throughput:
            raise v.invalid(
                "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when "
                "BillingMode is PAY_PER_REQUEST"
            )

    @staticmethod
    def _stream_spec(spec: dict[str, Any] | None) -> dict[str, Any] | None:
        if not spec:
            return None
        if spec.get("StreamEnabled") and spec.get("StreamViewType") not in VIEW_TYPES:
            raise v.validation(
                "StreamSpecification: StreamViewType must be provided when StreamEnabled is true"
            )
        if not spec.get("StreamEnabled") and spec.get("StreamViewType"):
            raise v.validation(
                "One or more parameter values were invalid: StreamSpecification: "
                "StreamViewType can only be specified when StreamEnabled is true"
            )
        return dict(spec)

    async def DescribeTable(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Table": self.describe(self._table(ctx, params["TableName"]))}

    async def ListTables(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        after = params.get("ExclusiveStartTableName") or ""
        limit = params.get("Limit") or LIST_LIMIT
        names = sorted(
            name
            for (account, region, name) in self.tables.tables
            if account == ctx.account and region == ctx.region and name > after
        )
        result: dict[str, Any] = {"TableNames": names[:limit]}
        if len(names) > limit:
            result["LastEvaluatedTableName"] = names[limit - 1]
        return result

    async def DeleteTable(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(ctx, params["TableName"])
        description = self.describe(table, "DELETING")
        self.tables.delete(table)
        return {"TableDescription": description}

    async def UpdateTable(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(ctx, params["TableName"])
        record = table.record
        before = partitions_for(record)
        if params.get("GlobalSecondaryIndexUpdates"):
            raise v.validation("GlobalSecondaryIndexUpdates are not supported by Lamina yet.")
        billing = params.get("BillingMode") or record["BillingMode"]
        throughput = params.get("ProvisionedThroughput")
        if billing == "PAY_PER_REQUEST" and params.get("BillingMode") == "PAY_PER_REQUEST":
            throughput = None
            record["ProvisionedThroughput"] = {}
        elif throughput is None:
            throughput = record.get("ProvisionedThroughput") or None
        self._check_billing(billing, throughput)
        record["BillingMode"] = billing
        if throughput:
            record["ProvisionedThroughput"] = dict(throughput)
        spec = self._stream_spec(params.get("StreamSpecification"))
        if spec is not None:
            if spec.get("StreamEnabled"):
                if table.stream is not None:
                    raise v.validation(
                        f"Table already has an enabled stream: TableName: {table.name}"
                    )
                self.tables.enable_stream(table, spec["StreamViewType"])
            else:
                if table.stream is None:
                    raise v.validation(f"Table does not have a stream to disable: {table.name}")
                self.tables.disable_stream(table)
            record["StreamSpecification"] = spec
        self.tables.save(table)
        if partitions_for(record) != before:
            self.tables.handover(table)  # the partitions changed: shards follow them
        return {"TableDescription": self.describe(table, "UPDATING")}

    # Tags --------------------------------------------------------------------------------------
    def _by_arn(self, ctx: RequestContext, arn: str) -> Table:
        found = TABLE_ARN.fullmatch(arn)
        if found is None or found.group(2) != ctx.account:
            raise not_found()
        table = self.tables.table(found.group(2), found.group(1), found.group(3))
        if table is None:
            raise AwsError(
                "ResourceNotFoundException",
                f"Requested resource not found: ResourcArn: {arn} not found",
                400,
            )
        return table

    async def TagResource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._by_arn(ctx, params["ResourceArn"])
        before = partitions_for(table.record)
        table.record.setdefault("tags", {}).update({t["Key"]: t["Value"] for t in params["Tags"]})
        self.tables.save(table)
        if partitions_for(table.record) != before:
            self.tables.handover(table)
        return {}

    async def UntagResource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        table = self._by_arn(ctx, params["ResourceArn"])
        before = partitions_for(table.record)
        for key in params["TagKeys"]:
            table.record.setdefault("tags", {}).pop(key, None)
        self.tables.save(table)
        if partitions_for(table.record) != before:
            self.tables.handover(table)
        return {}

    async def ListTagsOfResource(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        table = self._by_arn(ctx, params["ResourceArn"])
        tags = sorted((table.record.get("tags") or {}).items())
        return {"Tags": [{"Key": k, "Value": value} for k, value in tags]}

    async def DescribeTimeToLive(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        self._table(ctx, params["TableName"])
        return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
