"""`lamina accounts create | list | delete | keys create|delete | set-limits | requests |
approve`: accounts in the data directory, while the server runs or not (it notices)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from lamina.config import env_default


def add_parser(commands: argparse._SubParsersAction) -> None:
    accounts = commands.add_parser(
        "accounts", help="accounts, their access keys and limits (in the data directory)"
    )
    accounts.add_argument("--data-dir", type=Path, default=Path(env_default("DATA_DIR", ".lamina")))
    accounts.add_argument(
        "--database",
        default=env_default("DATABASE_URL", ""),
        metavar="postgresql://...",
        help="a cluster's database (the data directory then holds only accounts.key)",
    )
    actions = accounts.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new account with an access key")
    create.add_argument("name")
    create.add_argument("--concurrency", type=int, default=None)
    create.add_argument("--unreserved-floor", type=int, default=None)
    actions.add_parser("list", help="every account, its limits and access key ids")
    delete = actions.add_parser("delete", help="delete an account and its keys")
    delete.add_argument("name")
    keys = actions.add_parser("keys", help="create or delete access keys")
    key_actions = keys.add_subparsers(dest="key_action", required=True)
    key_create = key_actions.add_parser("create")
    key_create.add_argument("name")
    key_delete = key_actions.add_parser("delete")
    key_delete.add_argument("access_key_id")
    limits = actions.add_parser("set-limits", help="an account's concurrency limit and floor")
    limits.add_argument("name", help="an account's name or id (any 12-digit id with auth off)")
    limits.add_argument("--concurrency", type=int, default=None)
    limits.add_argument("--unreserved-floor", type=int, default=None)
    limits.add_argument(
        "--region",
        default="",
        help="only in this region (Lambda's quotas are regional); default: every region "
        "without limits of its own",
    )
    actions.add_parser("requests", help="quota increase requests")
    approve = actions.add_parser("approve", help="approve a pending quota increase request")
    approve.add_argument("request_id")


def _print(document: Any) -> None:
    print(json.dumps(document, indent=4))


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _check_limits(concurrency: int | None, floor: int | None) -> str:
    if concurrency is not None and concurrency < 1:
        return "--concurrency must be at least 1"
    if floor is not None and floor < 0:
        return "--unreserved-floor must not be negative"
    if concurrency is not None and floor is not None and floor > concurrency:
        return "--unreserved-floor must not exceed --concurrency"
    return ""


def known_regions() -> frozenset[str]:
    from lamina.api.auth import known_regions as regions

    return regions()


def run(args: argparse.Namespace) -> int:
    from lamina.store.accounts import AccountError, AccountStore
    from lamina.store.database import StoreUnavailable, open_shared

    try:
        shared = open_shared(args.database)
    except (StoreUnavailable, ValueError) as exc:
        print(f"lamina accounts: {exc}", file=sys.stderr)
        return 1
    try:
        store = AccountStore(args.data_dir.resolve(), shared)
    except AccountError as exc:
        print(f"lamina accounts: {exc}", file=sys.stderr)
        return 1
    try:
        return _run(store, args)
    except AccountError as exc:
        print(f"lamina accounts: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
        if shared is not None:
            shared.shutdown()


def _run(store: Any, args: argparse.Namespace) -> int:
    action = args.action
    if action in ("create", "set-limits"):
        problem = _check_limits(args.concurrency, args.unreserved_floor)
        if problem:
            print(f"lamina accounts: {problem}", file=sys.stderr)
            return 2
    if action == "create":
        account = store.create(args.name, args.concurrency, args.unreserved_floor)
        key_id, secret = store.create_key(account.id)
        _print(
            {
                "Account": {"Id": account.id, "Name": account.name},
                "AccessKey": {
                    "UserName": account.name,
                    "AccessKeyId": key_id,
                    "Status": "Active",
                    "SecretAccessKey": secret,
                    "CreateDate": _iso(account.created),
                },
            }
        )
    elif action == "list":
        regional: dict[str, dict[str, Any]] = {}
        for (account_id, region), (concurrency, floor) in store.all_limits().items():
            if region:
                regional.setdefault(account_id, {})[region] = {
                    "ConcurrentExecutions": concurrency,
                    "UnreservedFloor": floor,
                }
        _print(
            {
                "Accounts": [
                    {
                        "Id": a.id,
                        "Name": a.name,
                        "ConcurrentExecutions": a.concurrency,
                        "UnreservedFloor": a.unreserved_floor,
                        "Regions": regional.get(a.id, {}),
                        "AccessKeyIds": store.keys(a.id),
                        "Created": _iso(a.created),
                    }
                    for a in store.all()
                ]
            }
        )
    elif action == "delete":
        account = store.delete(args.name)
        _print({"Deleted": {"Id": account.id, "Name": account.name}})
    elif action == "keys":
        if args.key_action == "create":
            account = store.find(args.name)
            key_id, secret = store.create_key(account.id)
            _print(
                {
                    "AccessKey": {
                        "UserName": account.name,
                        "AccessKeyId": key_id,
                        "Status": "Active",
                        "SecretAccessKey": secret,
                    }
                }
            )
        else:
            store.delete_key(args.access_key_id)
            _print({"Deleted": {"AccessKeyId": args.access_key_id}})
    elif action == "set-limits":
        if args.region and args.region not in known_regions():
            print(f"lamina accounts: AWS has no region {args.region!r}", file=sys.stderr)
            return 2
        if args.name.isdigit() and len(args.name) == 12 and store.get(args.name) is None:
            account_id, name = args.name, None  # any account id, for auth off
        else:
            found = store.find(args.name)
            account_id, name = found.id, found.name
        store.set_account_limits(account_id, args.concurrency, args.unreserved_floor, args.region)
        limits = store.all_limits()[(account_id, args.region)]
        shown = {"Id": account_id, "Name": name} if name else {"Id": account_id}
        if args.region:
            shown["Region"] = args.region
        _print({**shown, "ConcurrentExecutions": limits[0], "UnreservedFloor": limits[1]})
    elif action == "requests":
        _print({"Requests": [_request(r) for r in store.requests()]})
    elif action == "approve":
        request = store.request(args.request_id)
        if request is None:
            print(f"lamina accounts: no quota request {args.request_id!r}", file=sys.stderr)
            return 1
        if request.status != "PENDING":
            print(f"lamina accounts: the request is {request.status}, not PENDING", file=sys.stderr)
            return 1
        store.set_account_limits(request.account, int(request.desired), None, request.region)
        _print({"Request": _request(store.set_request_status(request.id, "APPROVED"))})
    return 0


def _request(request: Any) -> dict[str, Any]:
    return {
        "Id": request.id,
        "Account": request.account,
        "Region": request.region,
        "ServiceCode": request.service,
        "QuotaCode": request.quota,
        "DesiredValue": request.desired,
        "Status": request.status,
        "Created": _iso(request.created),
    }
