"""Who may use a queue: its own account, and another account only where the queue's
`Policy` attribute (its resource policy, which AddPermission / RemovePermission edit)
allows the operation's action, as IAM evaluates it (lamina/iam.py).

A caller of another account that no statement lets in is answered as AWS answers it:
403 AccessDenied, "Access to the resource <queue URL> is denied." (the same whether or
not the queue exists, so nothing about another account's queues leaks).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from lamina import iam
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.services.sqs.messages import invalid_value, sqs_error
from lamina.services.sqs.queue import Queue

# The action each operation needs (batches need their single operation's).
ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
# What AddPermission may grant: everything else only the queue's owner may do.
GRANTABLE = frozenset(
    {
        "*",
        "ChangeMessageVisibility",
        "DeleteMessage",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListDeadLetterSourceQueues",
        "PurgeQueue",
        "ReceiveMessage",
        "SendMessage",
    }
)
MAX_ACTIONS = 7
# Operations no policy opens to another account (the SQS developer guide's list).
OWNER_ONLY = frozenset(
    {
        "AddPermission",
        "CancelMessageMoveTask",
        "CreateQueue",
        "DeleteQueue",
        "ListMessageMoveTasks",
        "ListQueues",
        "ListQueueTags",
        "RemovePermission",
        "SetQueueAttributes",
        "StartMessageMoveTask",
        "TagQueue",
        "UntagQueue",
    }
)


def access_denied(url: str) -> AwsError:
    return sqs_error(
        "AccessDeniedException", f"Access to the resource {url} is denied.", "AccessDenied", 403
    )


@lru_cache(maxsize=1024)
def _document(text: str) -> dict[str, Any] | None:
    return iam.parse(text)


def permitted(queue: Queue, ctx: RequestContext, operation: str) -> bool:
    """Whether the caller may perform `operation` on `queue`."""
    if queue.account == ctx.account:
        return True
    text = queue.attributes.get("Policy")
    if not text or operation in OWNER_ONLY:
        return False
    caller = iam.Caller(ctx.account, ctx.principal or f"arn:aws:iam::{ctx.account}:root")
    action = "sqs:" + ACTIONS.get(operation, operation)
    return iam.allows(_document(text), caller, action, queue.arn)


def may_send(queue: Queue, account: str, principal: str) -> bool:
    """Whether a function of `account` running as `principal` (its execution role) may
    send to `queue`: a destination or dead-letter queue of another account needs the
    queue's policy to allow it sqs:SendMessage."""
    if queue.account == account:
        return True
    text = queue.attributes.get("Policy")
    document = _document(text) if text else None
    caller = iam.Caller(account, principal or f"arn:aws:iam::{account}:root")
    return iam.allows(document, caller, "sqs:SendMessage", queue.arn)


def service_may_send(queue: Queue, service: str, source_arn: str, source_account: str) -> bool:
    """Whether AWS's `service` (sns.amazonaws.com, events.amazonaws.com, s3.amazonaws.com)
    may send to `queue` for `source_arn`: only where the queue's policy allows it, even
    for a source of the queue's own account, as AWS requires."""
    text = queue.attributes.get("Policy")
    document = _document(text) if text else None
    caller = iam.Caller(source_account, "", service)
    context = {"aws:sourcearn": source_arn, "aws:sourceaccount": source_account}
    return iam.allows(document, caller, "sqs:SendMessage", queue.arn, context)


def check_policy(text: str) -> None:
    """A Policy attribute must be a policy document (or empty, to remove it)."""
    if text and _document(text) is None:
        raise sqs_error("InvalidAttributeValue", "Invalid value for the parameter Policy.")


def _policy(queue: Queue) -> dict[str, Any]:
    text = queue.attributes.get("Policy")
    found = _document(text) if text else None
    if found is None:
        return {"Version": "2012-10-17", "Id": f"{queue.arn}/SQSDefaultPolicy", "Statement": []}
    document = json.loads(text or "{}")  # a copy to change
    if not isinstance(document["Statement"], list):
        document["Statement"] = [document["Statement"]]
    return dict(document)


def add_permission(queue: Queue, params: dict[str, Any]) -> None:
    """AddPermission: a statement named Label allowing the accounts the actions."""
    label = params.get("Label") or ""
    actions = list(params.get("Actions") or [])
    accounts = list(params.get("AWSAccountIds") or [])
    if not actions:
        raise sqs_error("MissingParameter", "The request must contain the parameter Actions.")
    if not accounts:
        raise invalid_value(
            "Value [] for parameter PrincipalId is invalid. Reason: Unable to verify."
        )
    if len(actions) > MAX_ACTIONS:
        raise sqs_error(
            "OverLimit", f"{len(actions)} Actions were found, maximum allowed is {MAX_ACTIONS}."
        )
    for action in actions:
        if action not in GRANTABLE:
            raise invalid_value(
                f"Value SQS:{action} for parameter ActionName is invalid. Reason: Only the queue "
                "owner is allowed to invoke this action."
            )
    document = _policy(queue)
    if any(s.get("Sid") == label for s in document["Statement"]):
        raise invalid_value(
            f"Value {label} for parameter Label is invalid. Reason: Already exists."
        )
    principals = [f"arn:aws:iam::{account}:root" for account in accounts]
    granted = [f"SQS:{action}" for action in actions]
    document["Statement"].append(
        {
            "Sid": label,
            "Effect": "Allow",
            "Principal": {"AWS": principals[0] if len(principals) == 1 else principals},
            "Action": granted[0] if len(granted) == 1 else granted,
            "Resource": queue.arn,
        }
    )
    queue.attributes["Policy"] = json.dumps(document, separators=(",", ":"))


def remove_permission(queue: Queue, params: dict[str, Any]) -> None:
    label = params.get("Label") or ""
    document = _policy(queue)
    kept = [s for s in document["Statement"] if s.get("Sid") != label]
    if len(kept) == len(document["Statement"]):
        raise invalid_value(
            f"Value {label} for parameter Label is invalid. Reason: can't find label on existing "
            "policy."
        )
    if kept:
        document["Statement"] = kept
        queue.attributes["Policy"] = json.dumps(document, separators=(",", ":"))
    else:
        queue.attributes.pop("Policy", None)
