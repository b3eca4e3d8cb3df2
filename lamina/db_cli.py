"""`lamina db upgrade | status`: the versioned schema of the store, in a cluster's
PostgreSQL database (`--database`) or a node's SQLite files (`--data-dir`).

A node creates the components a database lacks by itself, and brings its own SQLite
files up to date; a shared PostgreSQL database is upgraded once, by this command, before
nodes of the newer Lamina start (a node refuses a schema older or newer than its own).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lamina.config import env_default


def add_parser(commands: argparse._SubParsersAction) -> None:
    db = commands.add_parser("db", help="the store's schema: upgrade it, or show its versions")
    db.add_argument("--data-dir", type=Path, default=Path(env_default("DATA_DIR", ".lamina")))
    db.add_argument(
        "--database",
        default=env_default("DATABASE_URL", ""),
        metavar="postgresql://...",
        help="a cluster's database (default: the SQLite files of --data-dir)",
    )
    actions = db.add_subparsers(dest="action", required=True)
    actions.add_parser("upgrade", help="bring every component to this Lamina's version")
    actions.add_parser("status", help="each component's version, and this Lamina's")


def components() -> list[tuple[str, str, Sequence[str]]]:
    """(component, its SQLite file, its migrations) of every store."""
    from lamina.services.apigatewayv2 import store as apis
    from lamina.services.dynamodb import store as dynamodb
    from lamina.services.events import store as eventbridge
    from lamina.services.kinesis import store as kinesis
    from lamina.services.s3 import store as s3
    from lamina.services.sns import store as sns
    from lamina.services.sqs import store as sqs
    from lamina.store import (
        accounts,
        durable,
        events,
        layers,
        mappings,
        metric_archive,
        sqlite,
        telemetry,
        trace_archive,
        urls,
    )

    return [
        ("functions", "lamina.db", sqlite.MIGRATIONS),
        ("accounts", "accounts.db", accounts.MIGRATIONS),
        ("events", "events.db", events.MIGRATIONS),
        ("layers", "layers.db", layers.MIGRATIONS),
        ("durable", "durable.db", durable.MIGRATIONS),
        ("mappings", "mappings.db", mappings.MIGRATIONS),
        ("urls", "urls.db", urls.MIGRATIONS),
        ("sqs", "queues.db", sqs.MIGRATIONS),
        ("kinesis", "streams.db", kinesis.MIGRATIONS),
        ("dynamodb", "dynamodb.db", dynamodb.MIGRATIONS),
        ("apigateway", "apigateway.db", apis.MIGRATIONS),
        ("sns", "sns.db", sns.MIGRATIONS),
        ("telemetry", "telemetry.db", telemetry.MIGRATIONS),
        ("metrics", "metrics.db", metric_archive.MIGRATIONS),
        ("traces", "traces.db", trace_archive.MIGRATIONS),
        ("eventbridge", "eventbridge.db", eventbridge.MIGRATIONS),
        ("s3", "s3.db", s3.MIGRATIONS),
    ]


def run(args: argparse.Namespace) -> int:
    from lamina.store import schema
    from lamina.store.database import Database, SqliteDatabase, StoreUnavailable, open_shared

    try:
        shared = open_shared(args.database)
    except (StoreUnavailable, ValueError) as exc:
        print(f"lamina db: {exc}", file=sys.stderr)
        return 1
    data_dir = args.data_dir.resolve()
    if shared is None:
        data_dir.mkdir(parents=True, exist_ok=True)
    try:
        for component, filename, migrations in components():
            db: Database = shared or SqliteDatabase(data_dir / filename)
            try:
                before = schema.version(db, component)
                if args.action == "upgrade":
                    after = schema.ensure(db, component, migrations, upgrade_now=True)
                    change = f"{before} -> {after}" if after != before else f"{after} (current)"
                    print(f"{component}: {change}")
                else:
                    print(f"{component}: {before} (this Lamina: {len(migrations)})")
            finally:
                if db is not shared:
                    db.close()
    except (schema.SchemaError, StoreUnavailable) as exc:
        print(f"lamina db: {exc}", file=sys.stderr)
        return 1
    finally:
        if shared is not None:
            shared.shutdown()
    return 0
