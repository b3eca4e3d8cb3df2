"""The SNS operations (botocore's `sns` model, the query protocol): topics, subscriptions,
publishing and tags. State changes go through topics.py, deliveries through publish.py.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from lamina import iam
from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.services.sns.messages import (
    authorization_error,
    compile_filter,
    confirmation,
    invalid,
    not_found,
)
from lamina.services.sns.publish import Publisher, policy_document, timestamp
from lamina.services.sns.topics import Subscription, Topic, Topics

NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")
FIFO_NAME = re.compile(r"[A-Za-z0-9_-]{1,251}\.fifo")
TOPIC_ARN = re.compile(r"arn:aws:sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_.-]+)")
SQS_ARN = re.compile(r"arn:aws:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+")
LAMBDA_ARN = re.compile(r"arn:aws:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+(:[\w$-]+)?")
BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
TOPIC_ATTRIBUTES = frozenset(
    {
        "DeliveryPolicy", "DisplayName", "Policy", "TracingConfig", "KmsMasterKeyId",
        "SignatureVersion", "ContentBasedDeduplication", "ArchivePolicy",
        "FifoThroughputScope", "FifoTopic", "DataProtectionPolicy",
    }
)  # fmt: skip
SUBSCRIPTION_ATTRIBUTES = frozenset(
    {
        "DeliveryPolicy", "FilterPolicy", "FilterPolicyScope", "RawMessageDelivery",
        "RedrivePolicy", "SubscriptionRoleArn", "ReplayPolicy",
    }
)  # fmt: skip
PROTOCOLS = frozenset(
    {"http", "https", "email", "email-json", "sms", "sqs", "application", "lambda", "firehose"}
)
DELIVERED = frozenset({"http", "https", "sqs", "lambda"})
RAW_PROTOCOLS = frozenset({"http", "https", "sqs", "firehose"})
PAGE = 100
BATCH_LIMIT = 10


def _tags(entries: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in entries or []}


def _page(items: list[Any], token: str | None) -> tuple[list[Any], str | None]:
    start = int(token) if token and token.isdigit() else 0
    chunk = items[start : start + PAGE]
    return chunk, str(start + PAGE) if start + PAGE < len(items) else None


class SnsProvider:
    def __init__(self, topics: Topics, publisher: Publisher, clock: Clock) -> None:
        self.topics = topics
        self.publisher = publisher
        self.clock = clock

    # Lookups -----------------------------------------------------------------------------
    def _topic(self, ctx: RequestContext, arn: str | None, action: str) -> Topic:
        found = TOPIC_ARN.fullmatch(arn or "")
        if found is None:
            raise invalid("TopicArn")
        topic = self.topics.by_arn.get(arn or "")
        if found.group(2) != ctx.account and not self._permitted(ctx, topic, action):
            raise authorization_error(
                f"User: {ctx.principal or f'arn:aws:iam::{ctx.account}:root'} is not "
                f"authorized to perform: SNS:{action} on resource: {arn}"
            )
        if topic is None or (found.group(1) != ctx.region and found.group(2) == ctx.account):
            raise not_found("Topic does not exist")
        return topic

    @staticmethod
    def _permitted(ctx: RequestContext, topic: Topic | None, action: str) -> bool:
        if topic is None:
            return False
        text = topic.attributes.get("Policy", "")
        document = policy_document(text) if text else None
        caller = iam.Caller(ctx.account, ctx.principal or f"arn:aws:iam::{ctx.account}:root")
        return iam.allows(document, caller, f"sns:{action}", topic.arn)

    def _subscription(self, ctx: RequestContext, arn: str | None) -> Subscription:
        if not arn or arn.count(":") != 6 or not arn.startswith("arn:aws:sns:"):
            raise invalid("SubscriptionArn")
        found = self.topics.subscriptions.get(arn)
        if found is None:
            raise not_found("Subscription does not exist")
        return found

    # Topics ------------------------------------------------------------------------------
    async def CreateTopic(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Name"]
        attributes = dict(params.get("Attributes") or {})
        for key in attributes:
            if key not in TOPIC_ATTRIBUTES:
                raise invalid("AttributeName")
        fifo = attributes.get("FifoTopic", "false").lower() == "true"
        if fifo and not FIFO_NAME.fullmatch(name):
            raise invalid(
                "Fifo Topic names must end with .fifo and must be made up of only uppercase "
                "and lowercase ASCII letters, numbers, underscores, and hyphens, and must be "
                "between 1 and 256 characters long."
            )
        if not fifo and not NAME.fullmatch(name):
            raise invalid("Topic Name")
        if fifo:
            attributes["FifoTopic"] = "true"
            attributes.setdefault("ContentBasedDeduplication", "false")
        else:
            attributes.pop("FifoTopic", None)
            if "ContentBasedDeduplication" in attributes:
                raise invalid(
                    "ContentBasedDeduplication Reason: Content based deduplication can only "
                    "be set for FIFO topics"
                )
        self._check_topic_attributes(attributes)
        existing = self.topics.topics.get((ctx.account, ctx.region, name))
        if existing is not None:
            for key, value in attributes.items():
                if existing.attributes.get(key) != value:
                    raise invalid(
                        "Attributes Reason: Topic already exists with different attributes"
                    )
            return {"TopicArn": existing.arn}
        topic = self.topics.create(
            ctx.account, ctx.region, name, attributes, _tags(params.get("Tags"))
        )
        return {"TopicArn": topic.arn}

    @staticmethod
    def _check_topic_attributes(attributes: dict[str, str]) -> None:
        if attributes.get("Policy") and policy_document(attributes["Policy"]) is None:
            raise invalid("Policy Error: null")
        if attributes.get("DeliveryPolicy"):
            try:
                json.loads(attributes["DeliveryPolicy"])
            except ValueError:
                raise invalid("DeliveryPolicy: failed to parse JSON.") from None

    async def DeleteTopic(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        found = TOPIC_ARN.fullmatch(params.get("TopicArn") or "")
        if found is None:
            raise invalid("TopicArn")
        topic = self.topics.by_arn.get(params["TopicArn"])
        if topic is not None:  # deleting a topic that is gone succeeds, as on AWS
            self._topic(ctx, params["TopicArn"], "DeleteTopic")
            self.topics.delete(topic)
        return {}

    async def ListTopics(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arns = sorted(
            t.arn for t in self.topics.topics.values()
            if t.account == ctx.account and t.region == ctx.region
        )  # fmt: skip
        chunk, token = _page(arns, params.get("NextToken"))
        result: dict[str, Any] = {"Topics": [{"TopicArn": arn} for arn in chunk]}
        if token:
            result["NextToken"] = token
        return result

    async def GetTopicAttributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        topic = self._topic(ctx, params.get("TopicArn"), "GetTopicAttributes")
        subscriptions = list(topic.subscriptions.values())
        confirmed = sum(1 for s in subscriptions if s.confirmed)
        shown = {
            **topic.attributes,
            "TopicArn": topic.arn,
            "Owner": topic.account,
            "SubscriptionsConfirmed": str(confirmed),
            "SubscriptionsPending": str(len(subscriptions) - confirmed),
            "SubscriptionsDeleted": str(topic.deleted_subscriptions),
            "EffectiveDeliveryPolicy": json.dumps(
                {
                    "http": {
                        "defaultHealthyRetryPolicy": {
                            "minDelayTarget": 20,
                            "maxDelayTarget": 20,
                            "numRetries": 3,
                            "numMaxDelayRetries": 0,
                            "numNoDelayRetries": 0,
                            "numMinDelayRetries": 0,
                            "backoffFunction": "linear",
                        },
                        "disableSubscriptionOverrides": False,
                        "defaultRequestPolicy": {"headerContentType": "text/plain; charset=UTF-8"},
                    }
                },
                separators=(",", ":"),
            ),
        }
        return {"Attributes": shown}

    async def SetTopicAttributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        topic = self._topic(ctx, params.get("TopicArn"), "SetTopicAttributes")
        name, value = params["AttributeName"], params.get("AttributeValue") or ""
        if name not in TOPIC_ATTRIBUTES or name == "FifoTopic":
            raise invalid("AttributeName")
        if name == "ContentBasedDeduplication" and not topic.fifo:
            raise invalid(
                "ContentBasedDeduplication Reason: Content based deduplication can only be set "
                "for FIFO topics"
            )
        self._check_topic_attributes({name: value})
        topic.attributes[name] = value
        self.topics.save(topic)
        return {}

    # Subscriptions -----------------------------------------------------------------------
    def _check_subscription_attributes(
        self, protocol: str, attributes: dict[str, str], reason: bool = True
    ) -> None:
        for key, value in attributes.items():
            if key not in SUBSCRIPTION_ATTRIBUTES:
                raise invalid("Attributes Reason: Unknown attribute" if reason else "AttributeName")
            if key == "RawMessageDelivery":
                if value.lower() not in ("true", "false"):
                    raise invalid("Attributes Reason: RawMessageDelivery: Invalid value")
                if value.lower() == "true" and protocol not in RAW_PROTOCOLS:
                    raise invalid(
                        f"Attributes Reason: Delivery protocol [{protocol}] does not support "
                        "raw message delivery."
                    )
            if key == "FilterPolicyScope" and value not in ("MessageAttributes", "MessageBody"):
                raise invalid("FilterPolicyScope: Invalid filter policy scope")
            if key == "RedrivePolicy" and value:
                try:
                    target = json.loads(value).get("deadLetterTargetArn")
                except (ValueError, AttributeError):
                    target = None
                if not target or not SQS_ARN.fullmatch(str(target)):
                    raise invalid("RedrivePolicy: deadLetterTargetArn is invalid")
        if attributes.get("FilterPolicy"):
            compile_filter(
                attributes["FilterPolicy"],
                attributes.get("FilterPolicyScope", "MessageAttributes"),
            )

    async def Subscribe(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        topic = self._topic(ctx, params.get("TopicArn"), "Subscribe")
        protocol = params["Protocol"]
        endpoint = params.get("Endpoint") or ""
        if protocol not in PROTOCOLS:
            raise invalid(f"Amazon SNS does not support this protocol string: {protocol}")
        if protocol not in DELIVERED:
            raise invalid(f"Lamina does not deliver to the protocol {protocol}")
        if topic.fifo and protocol != "sqs":
            raise invalid(f"Invalid protocol type: {protocol}")
        if protocol == "sqs" and not SQS_ARN.fullmatch(endpoint):
            raise invalid("SQS endpoint ARN")
        if protocol == "lambda" and not LAMBDA_ARN.fullmatch(endpoint):
            raise invalid("Lambda endpoint ARN")
        if protocol in ("http", "https") and not endpoint.lower().startswith(f"{protocol}://"):
            raise invalid("Endpoint must match the specified protocol")
        if not topic.fifo and protocol == "sqs" and endpoint.endswith(".fifo"):
            raise invalid(
                "Invalid parameter: Endpoint Reason: FIFO SQS Queues can not be subscribed to "
                "standard SNS topics"
            )  # (a FIFO topic delivers to standard queues too, without ordering)
        attributes = dict(params.get("Attributes") or {})
        self._check_subscription_attributes(protocol, attributes)
        for existing in topic.subscriptions.values():
            if existing.protocol == protocol and existing.endpoint == endpoint:
                if any(existing.attributes.get(k) != v for k, v in attributes.items()):
                    raise invalid(
                        "Attributes Reason: Subscription already exists with different attributes"
                    )
                return {"SubscriptionArn": self._shown_arn(existing, params)}
        subscription = self.topics.subscribe(
            topic, ctx.account, protocol, endpoint, attributes, ctx.endpoint
        )
        if not subscription.confirmed:
            self._send_confirmation(topic, subscription, "SubscriptionConfirmation")
        return {"SubscriptionArn": self._shown_arn(subscription, params)}

    @staticmethod
    def _shown_arn(subscription: Subscription, params: dict[str, Any]) -> str:
        if subscription.confirmed or params.get("ReturnSubscriptionArn"):
            return subscription.arn
        return "pending confirmation"

    def _send_confirmation(self, topic: Topic, subscription: Subscription, kind: str) -> None:
        assert subscription.token is not None or kind == "UnsubscribeConfirmation"
        token = subscription.token or uuid.uuid4().hex
        body = confirmation(
            kind,
            str(uuid.uuid4()),
            topic.arn,
            token,
            subscription.api_endpoint,
            timestamp(self.clock.wall()),
        )
        headers = {
            "x-amz-sns-message-type": kind,
            "x-amz-sns-message-id": body["MessageId"],
            "x-amz-sns-topic-arn": topic.arn,
            "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
        }
        if kind == "UnsubscribeConfirmation":
            headers["x-amz-sns-subscription-arn"] = subscription.arn
        message = {
            "deliver_to": {"endpoint": subscription.endpoint},
            "body": json.dumps(body),
            "headers": headers,
        }
        self.publisher.deliveries.queue_later([(subscription.arn, message, self.clock.wall())])

    async def ConfirmSubscription(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        arn = params.get("TopicArn") or ""
        if TOPIC_ARN.fullmatch(arn) is None:
            raise invalid("TopicArn")
        topic = self.topics.by_arn.get(arn)  # the token is the credential
        if topic is None:
            raise not_found("Topic does not exist")
        for subscription in topic.subscriptions.values():
            if subscription.token and subscription.token == params.get("Token"):
                if not subscription.confirmed:
                    subscription.confirmed = True
                    wanted = str(params.get("AuthenticateOnUnsubscribe") or "").lower()
                    subscription.authenticate_unsubscribe = wanted == "true" and bool(ctx.account)
                    self.topics.save_subscription(subscription)
                return {"SubscriptionArn": subscription.arn}
        raise invalid("Token")

    async def Unsubscribe(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        subscription = self._subscription(ctx, params.get("SubscriptionArn"))
        topic = self.topics.by_arn.get(subscription.topic_arn)
        owners = {subscription.account, topic.account if topic is not None else ""}
        if not ctx.account:  # the UnsubscribeURL, unsigned: allowed unless it was refused
            refused = subscription.authenticate_unsubscribe
        else:
            refused = ctx.account not in owners
        if refused:
            raise authorization_error(
                f"User: arn:aws:iam::{ctx.account}:root is not authorized to perform: "
                f"SNS:Unsubscribe on resource: {subscription.arn}"
            )
        self.topics.unsubscribe(subscription)
        if (
            topic is not None
            and subscription.protocol in ("http", "https")
            and subscription.confirmed
        ):
            self._send_confirmation(topic, subscription, "UnsubscribeConfirmation")
        return {}

    @staticmethod
    def _listed(subscription: Subscription) -> dict[str, Any]:
        return {
            "SubscriptionArn": subscription.arn if subscription.confirmed
            else "PendingConfirmation",
            "Owner": subscription.account,
            "Protocol": subscription.protocol,
            "Endpoint": subscription.endpoint,
            "TopicArn": subscription.topic_arn,
        }  # fmt: skip

    async def ListSubscriptions(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        mine = [
            self._listed(s) for s in self.topics.subscriptions.values()
            if s.account == ctx.account and s.topic_arn.split(":")[3] == ctx.region
        ]  # fmt: skip
        chunk, token = _page(mine, params.get("NextToken"))
        result: dict[str, Any] = {"Subscriptions": chunk}
        if token:
            result["NextToken"] = token
        return result

    async def ListSubscriptionsByTopic(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        topic = self._topic(ctx, params.get("TopicArn"), "ListSubscriptionsByTopic")
        listed = [self._listed(s) for s in topic.subscriptions.values()]
        chunk, token = _page(listed, params.get("NextToken"))
        result: dict[str, Any] = {"Subscriptions": chunk}
        if token:
            result["NextToken"] = token
        return result

    async def GetSubscriptionAttributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        subscription = self._subscription(ctx, params.get("SubscriptionArn"))
        shown = {
            "SubscriptionArn": subscription.arn,
            "TopicArn": subscription.topic_arn,
            "Owner": subscription.account,
            "Protocol": subscription.protocol,
            "Endpoint": subscription.endpoint,
            "ConfirmationWasAuthenticated": "true" if subscription.confirmed else "false",
            "PendingConfirmation": "false" if subscription.confirmed else "true",
            "RawMessageDelivery": "false",
            "SubscriptionPrincipal": f"arn:aws:iam::{subscription.account}:root",
            **subscription.attributes,
        }
        if shown.get("FilterPolicy"):
            shown.setdefault("FilterPolicyScope", "MessageAttributes")
        return {"Attributes": shown}

    async def SetSubscriptionAttributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        subscription = self._subscription(ctx, params.get("SubscriptionArn"))
        name, value = params["AttributeName"], params.get("AttributeValue") or ""
        if name not in SUBSCRIPTION_ATTRIBUTES:
            raise invalid("AttributeName")
        changed = {**subscription.attributes, name: value}
        if not value:
            changed.pop(name)
        self._check_subscription_attributes(subscription.protocol, {name: value} if value else {},
                                            reason=False)  # fmt: skip
        if name in ("FilterPolicy", "FilterPolicyScope") and changed.get("FilterPolicy"):
            compile_filter(
                changed["FilterPolicy"], changed.get("FilterPolicyScope", "MessageAttributes")
            )
        subscription.attributes = changed
        subscription.compile()
        self.topics.save_subscription(subscription)
        return {}

    # Publishing --------------------------------------------------------------------------
    async def Publish(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("TopicArn") or params.get("TargetArn")
        if params.get("PhoneNumber"):
            raise invalid("Lamina does not deliver SMS: PhoneNumber")
        if not arn:
            raise invalid("TopicArn or TargetArn Reason: no value for required parameter")
        topic = self._topic(ctx, arn, "Publish")
        message = self.publisher.prepare(topic, params, ctx.endpoint)
        return await self.publisher.publish(topic, message)

    async def PublishBatch(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        topic = self._topic(ctx, params.get("TopicArn"), "Publish")
        entries = list(params.get("PublishBatchRequestEntries") or [])
        if not entries:
            raise AwsError(
                "EmptyBatchRequestException", "The batch request doesn't contain any entries"
            )
        if len(entries) > BATCH_LIMIT:
            raise AwsError(
                "TooManyEntriesInBatchRequestException",
                "The batch request contains more entries than permissible.",
            )
        ids = [e.get("Id", "") for e in entries]
        if len(set(ids)) != len(ids):
            raise AwsError(
                "BatchEntryIdsNotDistinctException",
                "Two or more batch entries in the request have the same Id.",
            )
        if any(not BATCH_ID.fullmatch(i) for i in ids):
            raise AwsError(
                "InvalidBatchEntryIdException",
                "The Id of a batch entry in a batch request doesn't abide by the specification.",
            )
        total = sum(len(str(e.get("Message") or "").encode()) for e in entries)
        if total > 262_144:
            raise AwsError(
                "BatchRequestTooLongException",
                "The length of all the messages put together is more than the limit.",
            )
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for entry in entries:
            try:
                message = self.publisher.prepare(topic, entry, ctx.endpoint)
            except AwsError as error:
                failed.append({"Id": entry["Id"], "Code": error.code.removesuffix("Exception"),
                               "Message": error.message, "SenderFault": True})  # fmt: skip
                continue
            answer = await self.publisher.publish(topic, message)
            successful.append({"Id": entry["Id"], **answer})
        return {"Successful": successful, "Failed": failed}

    # Tags --------------------------------------------------------------------------------
    def _tagged(self, ctx: RequestContext, arn: str) -> Topic:
        topic = self.topics.by_arn.get(arn)
        if topic is None or topic.account != ctx.account:
            raise AwsError("ResourceNotFoundException", "Resource does not exist")
        return topic

    async def TagResource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        topic = self._tagged(ctx, params["ResourceArn"])
        if len({**topic.tags, **_tags(params.get("Tags"))}) > 50:
            raise AwsError(
                "TagLimitExceededException",
                "Could not complete request: tag quota of per resource exceeded",
            )
        topic.tags.update(_tags(params.get("Tags")))
        self.topics.save(topic)
        return {}

    async def UntagResource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        topic = self._tagged(ctx, params["ResourceArn"])
        for key in params.get("TagKeys") or []:
            topic.tags.pop(key, None)
        self.topics.save(topic)
        return {}

    async def ListTagsForResource(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        topic = self._tagged(ctx, params["ResourceArn"])
        return {"Tags": [{"Key": k, "Value": v} for k, v in topic.tags.items()]}
