"""Every store, on both of its databases: SQLite (the embedded default) and PostgreSQL (the
cluster's, a server of the suite's own). The same cases hold for each."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.keys import FunctionKey
from lamina.services.dynamodb.store import StreamRecord, TableStore, sequence_text
from lamina.services.kinesis.store import StoredRecord, StreamStore
from lamina.services.sqs.store import QueueStore, StoredMessage
from lamina.store import schema
from lamina.store.accounts import AccountError, AccountStore
from lamina.store.database import Database, PostgresDatabase, SqliteDatabase
from lamina.store.durable import DurableStore
from lamina.store.events import EventStore, StoredEvent
from lamina.store.layers import LayerStore
from lamina.store.mappings import MappingStore
from lamina.store.sqlite import FunctionStore
from lamina.store.urls import UrlConfig, UrlStore
from tests.cluster.postgres_server import PostgresServer, fresh_database

Open = Callable[[], "Database | None"]


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database | None]:
    """None: each store opens its SQLite file; else the PostgreSQL database they share."""
    if request.param == "sqlite":
        yield None
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    db = PostgresDatabase(fresh_database(server))
    yield db
    db.shutdown()


def record(digest: str, size: int = 10, versions: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "config": {"CodeSize": size},
        "code": {"digest": digest, "unzipped": size * 2},
        "versions": versions or {},
    }


def test_functions(tmp_path: Path, shared: Database | None) -> None:
    store = FunctionStore(tmp_path, shared)
    key = FunctionKey("111111111111", "us-east-1", "f")
    assert store.insert_function(key, record("aa", 10))
    assert not store.insert_function(key, record("bb"))
    assert store.function_view(key) == record("aa", 10)
    assert store.usage("111111111111", "us-east-1") == (1, 10)
    store.update_function(key, record("bb", 30, {"1": {"code": {"digest": "aa"}}}))
    assert store.function_view(key)["code"]["digest"] == "bb"
    assert store.references("aa") == 1 and store.references("bb") == 1
    assert store.unzipped_size("bb") == 60
    store.invalidate()
    assert store.usage("111111111111", "us-east-1") == (1, 30)
    assert store.references("aa") == 1
    other = FunctionKey("111111111111", "us-east-1", "e")
    store.insert_function(other, record("cc"))
    assert [r["code"]["digest"] for r in store.list_functions("111111111111", "us-east-1")] == [
        "cc",
        "bb",
    ]
    assert len(store.list_functions("111111111111", "us-east-1", after="e")) == 1
    assert {k.name for k, _ in store.all_functions()} == {"e", "f"}
    gone: list[str] = []
    store.on_unreferenced.append(gone.append)
    assert store.delete_function(key)
    assert not store.delete_function(key)
    assert store.function_view(key) is None
    assert sorted(gone) == ["aa", "bb"]
    assert store.count_functions("111111111111", "us-east-1") == 1


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", text)
    return buffer.getvalue()


def _extract(blob: bytes, into: Path) -> int:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        archive.extractall(into)
    return len(blob)


def test_code_reaches_a_node_that_lacks_it(tmp_path: Path, shared: Database | None) -> None:
    one = FunctionStore(tmp_path / "one", shared)
    blob = _zip("print('hi')")
    staging = one.staging_dir()
    _extract(blob, staging)
    one.put_code("d1", blob, staging)
    assert one.has_code("d1")
    two = FunctionStore(tmp_path / "two", shared)
    fetched = two.fetch_code("d1", _extract)
    # Another node's code is in the shared database only; a SQLite node has its own.
    assert fetched == (shared is not None)
    if shared is not None:
        assert (two.code_dir("d1") / "app.py").read_text() == "print('hi')"
        assert two.code_zip("d1").read_bytes() == blob
    assert not two.fetch_code("unknown", _extract)


def test_a_write_on_one_node_leaves_the_others_caches(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = fresh_database(postgres)
    a_db, b_db = PostgresDatabase(url), PostgresDatabase(url)
    try:
        a, b = FunctionStore(tmp_path / "a", a_db), FunctionStore(tmp_path / "b", b_db)
        told = threading.Event()

        def deliver(fn: Callable[[], None]) -> None:
            fn()
            told.set()

        b.listen(deliver)
        time.sleep(0.3)  # b's listening connection is up
        key = FunctionKey("1", "r", "f")
        a.insert_function(key, record("x"))
        assert b.function_view(key)["code"]["digest"] == "x"
        told.clear()
        a.update_function(key, record("y"))
        assert told.wait(5)
        assert b.function_view(key)["code"]["digest"] == "y"
    finally:
        a_db.shutdown()
        b_db.shutdown()


def test_queues(tmp_path: Path, shared: Database | None) -> None:
    store = QueueStore(tmp_path, shared)
    q1 = store.queues.insert("1", "r", "q1", {"a": 1})
    q2 = store.queues.insert("1", "r", "q2", {})
    assert q2 > q1
    store.queues.update(q1, {"a": 2})
    assert [(i, n, r) for i, _, _, n, r in store.queues.all()] == [
        (q1, "q1", {"a": 2}),
        (q2, "q2", {}),
    ]
    messages = [StoredMessage(s, {"body": f"m{s}"}, 0.0, 0, None, None) for s in range(1, 4)]
    store.insert_messages(q1, messages)
    store.update_states(q1, [(2, 99.5, 1, 5.25, "r2")])
    store.delete_messages(q1, [1])
    store.move_message(q1, 3, q2, StoredMessage(3, {"body": "m3"}, 1.0, 2, None, None))
    assert [(m.seq, m.visible, m.receives, m.receipt) for m in store.messages(q1)] == [
        (2, 99.5, 1, "r2")
    ]
    assert [m.message for m in store.messages(q2)] == [{"body": "m3"}]

    def fifo(seq: int) -> StoredMessage:
        return StoredMessage(seq, {"id": f"m{seq}", "sequence": str(seq)}, 0.0, 0, None, None)

    assert store.insert_unique(q1, fifo(10), "k", 10.0, 0.0) is None
    assert store.insert_unique(q1, fifo(11), "k", 11.0, 5.0) == ("m10", "10")  # a duplicate
    assert store.insert_unique(q1, fifo(12), "k", 30.0, 10.0) is None  # the first expired
    assert [m.seq for m in store.messages(q1)] == [2, 10, 12]
    store.delete_queue(q1)
    assert list(store.messages(q1)) == []
    assert store.insert_unique(q1, fifo(13), "k", 40.0, 10.0) is None  # its ids went too
    assert [n for _, _, _, n, _ in store.queues.all()] == ["q2"]
    store.purge(q2)
    assert list(store.messages(q2)) == []


def test_queue_windows(tmp_path: Path, shared: Database | None) -> None:
    """Pages of a queue's messages in the order they become visible, counts, states."""
    store = QueueStore(tmp_path, shared)
    q = store.queues.insert("1", "r", "w", {})
    visible = {1: 5.0, 2: 1.0, 3: 5.0, 4: 9.0, 5: 3.0}
    receives = {4: 1}
    store.insert_messages(
        q,
        [StoredMessage(s, {}, v, receives.get(s, 0), None, None) for s, v in visible.items()],
    )
    assert [m.seq for m in store.window(q, None, 3)] == [2, 5, 1]
    assert [m.seq for m in store.window(q, (5.0, 1), 3)] == [3, 4]
    assert store.window(q, (9.0, 4), 3) == []
    assert store.counts(q, 4.0) == (2, 1, 2)  # visible, in flight, delayed
    assert store.last_seq(q) == 5 and store.last_seq(q + 1) == 0
    assert store.states(q, [4, 6]) == {4: (9.0, 1, None, None)}
    found = store.message(q, 3)
    assert found is not None and found.visible == 5.0 and store.message(q, 6) is None


def test_streams(tmp_path: Path, shared: Database | None) -> None:
    store = StreamStore(tmp_path, shared)
    sid = store.streams.insert("1", "r", "s", {})
    store.append(sid, [StoredRecord(0, n, "pk", bytes([n, 0, 255]), 100.0 + n) for n in range(5)])
    store.append(sid, [StoredRecord(1, 0, "pk", b"x", 50.0)])
    assert store.next_positions(sid) == {0: 5, 1: 1}
    read = store.read(sid, 0, 2, 10, 1 << 20)
    assert [(r.n, r.data) for r in read] == [(n, bytes([n, 0, 255])) for n in (2, 3, 4)]
    assert store.first_at(sid, 0, 102.5) == 3
    assert store.arrival(sid, 0, 1) == 101.0
    assert store.trim(sid, 103.0) == 3
    assert store.oldest(sid, 0) == 3
    assert store.oldest(sid, 1) == 0  # a shard's newest record stays
    store.delete_stream(sid)
    assert store.next_positions(sid) == {}


def test_tables(tmp_path: Path, shared: Database | None) -> None:
    store = TableStore(tmp_path, shared)
    tid = store.tables.insert("1", "r", "t", {})
    item = {"pk": {"S": "a"}, "sk": {"N": "1"}, "blob": {"B": b"\x00\x01"}}
    change = {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}}}}
    stored = store.write(
        [(tid, b"a", b"\x01", item), (tid, b"a", b"\x02", item), (tid, b"b", b"", item)],
        [(tid, StreamRecord(0, 0, 100, "a", change, 1.0))],
    )
    if shared is not None:  # a cluster's database numbers the record, in it too
        numbered = {**change["dynamodb"], "SequenceNumber": sequence_text(100)}
        change = {**change, "dynamodb": numbered}
    assert [r.record for _, r in stored] == [change]
    assert store.get(tid, b"a", b"\x01") == item
    store.write([(tid, b"a", b"\x01", {**item, "v": {"S": "2"}})], [])
    assert store.get(tid, b"a", b"\x01")["v"] == {"S": "2"}
    assert [k for k, _ in store.query(tid, b"a", None, None, False, None)] == [b"\x02", b"\x01"]
    assert [k for k, _ in store.query(tid, b"a", b"\x02", None, True, None)] == [b"\x02"]
    assert [(h, r) for h, r, _ in store.scan(tid, (b"a", b"\x01"))] == [
        (b"a", b"\x02"),
        (b"b", b""),
    ]
    assert store.count(tid)[0] == 3
    assert store.stream_positions(tid) == ({0: 1}, 100)
    assert store.read(tid, 0, 0, 10)[0].record == change
    assert store.position_of(tid, 0, 100) == 0
    store.write([(tid, b"b", b"", None)], [])
    assert store.get(tid, b"b", b"") is None
    store.delete_table(tid)
    assert store.count(tid) == (0, 0)


def test_mappings(tmp_path: Path, shared: Database | None) -> None:
    store = MappingStore(tmp_path, shared)
    store.insert("u1", {"n": 1})
    store.insert("u2", {"n": 2})
    store.update("u1", {"n": 3})
    assert list(store.mappings()) == [{"n": 3}, {"n": 2}]
    store.set_checkpoint("u1", 0, 5)
    store.set_checkpoint("u1", 0, 7)
    store.set_checkpoint("u1", 1, 2)
    assert store.checkpoints("u1") == {0: 7, 1: 2}
    store.delete("u1")
    assert store.checkpoints("u1") == {} and list(store.mappings()) == [{"n": 2}]


def test_layers(tmp_path: Path, shared: Database | None) -> None:
    store = LayerStore(tmp_path, shared)
    assert store.add("1", "r", "l", {"digest": "abc"}) == 1
    assert store.add("1", "r", "l", {"digest": "def"}) == 2
    store.delete("1", "r", "l", 2)
    assert store.add("1", "r", "l", {"digest": "ghi"}) == 3  # numbers are never reused
    assert [v["Version"] for v in store.versions("1", "r", "l")] == [3, 1]
    assert store.uses("abc") and not store.uses("def")
    store.put("1", "r", "l", {"Version": 1, "digest": "zzz"})
    assert store.get("1", "r", "l", 1) == {"Version": 1, "digest": "zzz"}
    assert store.names("1", "r") == ["l"]


def test_durable(tmp_path: Path, shared: Database | None) -> None:
    store = DurableStore(tmp_path, shared)
    base = {"account": "1", "region": "r", "function": "f", "status": "RUNNING"}
    store.save({**base, "arn": "a1", "name": "n1", "start": 1.0}, [("cb1", "op1")])
    store.save({**base, "arn": "a2", "name": "n1", "start": 2.0})
    store.save({**base, "arn": "a1", "name": "n1", "start": 1.0, "status": "SUCCEEDED"}, (), 10.0)
    assert store.load("a1")["status"] == "SUCCEEDED"
    assert store.by_name("1", "r", "f", "n1")["arn"] == "a2"
    assert store.callback("cb1") == ("a1", "op1")
    assert [r["arn"] for r in store.running()] == ["a2"]
    assert [s["arn"] for s in store.list("1", "r", "f")] == ["a1", "a2"]
    assert store.next_expiry() == 10.0
    assert store.expire(11.0) == 1
    assert store.load("a1") is None and store.callback("cb1") is None
    store.delete_function("1", "r", "f")
    assert store.load("a2") is None


def test_urls(tmp_path: Path, shared: Database | None) -> None:
    store = UrlStore(tmp_path, shared)
    key = FunctionKey("1", "r", "f")
    config = UrlConfig("id1", key, "", "NONE", "BUFFERED", None, "c", "m")
    store.put(config)
    store.put(UrlConfig("id1", key, "", "AWS_IAM", "BUFFERED", {"a": 1}, "c", "m2"))
    again = UrlStore(tmp_path, shared)
    found = again.get("id1")
    assert found is not None and found.auth_type == "AWS_IAM" and found.cors == {"a": 1}
    assert again.find(key, "") == found
    again.delete(found)
    assert UrlStore(tmp_path, shared).get("id1") is None


def test_accounts(tmp_path: Path, shared: Database | None) -> None:
    store = AccountStore(tmp_path, shared)
    account = store.create("team", concurrency=50)
    with pytest.raises(AccountError):
        store.create("team")
    assert store.find("team").concurrency == 50
    key_id, secret = store.create_key("team")
    assert store.secret(key_id) == (account.id, secret)
    assert store.keys(account.id) == [key_id]
    store.set_account_limits(account.id, None, 7, region="eu-west-1")
    assert store.all_limits()[(account.id, "eu-west-1")] == (None, 7)
    request = store.add_request(account.id, "r", "lambda", "L-1", 2000.0, "PENDING")
    assert store.requests(status="PENDING") == [request]
    assert store.requests(account="other") == []
    assert store.set_request_status(request.id, "APPROVED").status == "APPROVED"
    reader = AccountStore(tmp_path, shared)  # another process: `lamina accounts`
    reader.changed()
    store.delete_key(key_id)
    assert reader.changed() and not reader.changed()
    assert reader.secret(key_id) is None
    store.delete("team")
    assert store.all() == []


def test_a_node_with_another_secrets_key_is_refused(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    db = PostgresDatabase(fresh_database(postgres))
    try:
        AccountStore(tmp_path / "a", db)
        with pytest.raises(AccountError, match=r"accounts\.key"):
            AccountStore(tmp_path / "b", db)
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "accounts.key").write_bytes(
            (tmp_path / "a" / "accounts.key").read_bytes()
        )
        AccountStore(tmp_path / "c", db)
    finally:
        db.shutdown()


def test_events(tmp_path: Path, shared: Database | None) -> None:
    async def scenario() -> None:
        store = EventStore(tmp_path, shared)
        ids = await asyncio.gather(
            *(
                store.add(
                    StoredEvent(0, "1", "r", "f", "$LATEST", f"q{i}", b"p%d" % i, 1.0, 0, 2.0)
                )
                for i in range(20)
            )
        )
        assert len(set(ids)) == 20
        await store.reschedule(ids[0], 3, 9.5)
        await store.remove(ids[1])
        store.close()
        again = EventStore(tmp_path, shared)
        if shared is not None:
            # Another node adopts the events of a node only once it stopped beating.
            assert [e for batch in again.pending() for e in batch] == []
            shared.execute("UPDATE event_owners SET beat=0 WHERE node=?", (store.node,))
        pending = [e for batch in again.pending(batch=7) for e in batch]
        assert [e.id for e in pending] == sorted(set(ids) - {ids[1]})
        assert (pending[0].attempts, pending[0].due) == (3, 9.5)
        assert again.payload_of(pending[2]) == b"p3"
        if shared is not None:
            assert again.adopt() == []  # each event adopted once
        again.close()

    asyncio.run(scenario())


def test_schema_versions(tmp_path: Path, postgres: PostgresServer) -> None:
    sqlite = SqliteDatabase(tmp_path / "x.db")
    assert schema.ensure(sqlite, "c", ["CREATE TABLE a (x INTEGER)"]) == 1
    # SQLite (a node's own files) upgrades by itself.
    assert schema.ensure(sqlite, "c", ["CREATE TABLE a (x INTEGER)", "ALTER TABLE a ADD y"]) == 2
    db = PostgresDatabase(fresh_database(postgres))
    try:
        assert schema.ensure(db, "c", ["CREATE TABLE a (x INTEGER, t REAL, b BLOB)"]) == 1
        later = ["CREATE TABLE a (x INTEGER, t REAL, b BLOB)", "ALTER TABLE a ADD y TEXT"]
        with pytest.raises(schema.SchemaError, match="lamina db upgrade"):
            schema.ensure(db, "c", later)
        assert schema.ensure(db, "c", later, upgrade_now=True) == 2
        with pytest.raises(schema.SchemaError, match="newer"):
            schema.ensure(db, "c", later[:1])
        db.execute("INSERT INTO a (x, t, b, y) VALUES (?, ?, ?, ?)", (2**40, 0.1, b"\x00", "50%"))
        assert db.execute(
            "SELECT x, t, b, y FROM a WHERE y LIKE '%\\%' ESCAPE '\\'"
        ).fetchone() == (
            2**40,
            0.1,
            b"\x00",
            "50%",
        )
    finally:
        db.shutdown()


def test_topics(tmp_path: Path, shared: Database | None) -> None:
    from lamina.services.sns.store import TopicStore

    store = TopicStore(tmp_path, shared)
    topic = store.topics.insert("1", "r", "t", {})
    store.put_subscription("s1", "arn:t", {"a": 1})
    store.put_subscription("s2", "arn:t", {})
    store.put_subscription("s1", "arn:t", {"a": 2})
    assert list(store.subscriptions()) == [("s1", "arn:t", {"a": 2}), ("s2", "arn:t", {})]
    ids = store.add_pending([("s1", {"m": 1}, 5.0), ("s2", {"m": 2}, 6.0)])
    store.reschedule(ids[0], 2, 9.0)
    store.done(ids[1])
    assert [(p.id, p.attempts, p.due, p.message) for p in store.pending()] == [
        (ids[0], 2, 9.0, {"m": 1})
    ]
    mine, theirs = store.pending()[0], store.pending()[0]  # two nodes' views of one row
    assert store.take(mine, 50.0) and not store.take(theirs, 60.0)  # one claims it
    store.delete_topic(topic, "arn:t")
    assert list(store.subscriptions()) == [] and list(store.topics.all()) == []


def test_event_rules(tmp_path: Path, shared: Database | None) -> None:
    from lamina.services.events.rules import Rules
    from lamina.services.events.store import RuleStore

    rules = Rules(RuleStore(tmp_path, shared))
    bus = rules.create_bus("1", "r", "orders", {"Description": "d"})
    rules.put_rule("1", "r", "orders", "big", {"EventPattern": '{"source": ["s"]}'})
    rules.put_rule("1", "r", "default", "tick", {"ScheduleExpression": "rate(1 minute)"})
    again = Rules(rules.store)  # what a restart loads
    assert again.rule("1", "r", "orders", "big") is not None
    assert [r.name for r in again.scheduled()] == ["tick"]
    rules.delete_bus(bus)
    again = Rules(rules.store)
    assert again.bus("1", "r", "orders") is None and again.rule("1", "r", "orders", "big") is None
    from lamina.services.events.store import Retry

    retry = Retry(0, 7, "t", {"id": "e"}, 1.0, 2, 5.0)
    retry.id = rules.store.add_retry(retry)
    mine, theirs = rules.store.retries()[0], rules.store.retries()[0]
    assert mine.event == {"id": "e"} and mine.attempt == 2
    assert rules.store.take_retry(mine, 9.0) and not rules.store.take_retry(theirs, 9.5)
    rules.store.retry_done(retry.id)
    assert rules.store.retries() == []
    rules.store.close()


def test_log_lines(
    tmp_path: Path, shared: Database | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.store import telemetry
    from lamina.store.telemetry import LogArchive

    one, two = LogArchive(tmp_path, shared), LogArchive(tmp_path, shared)
    f, g = FunctionKey("1", "r", "f"), FunctionKey("1", "r", "g")
    one.append([(f, "s1", 100.0, "old"), (f, "s1", 5000.0, "a"), (g, "s2", 5001.0, "b")])
    two.append([(g, "s3", 5002.0, "c")])
    assert [line for _, line in one.recent(1000.0)] == [
        (f, "s1", 5000.0, "a"),
        (g, "s2", 5001.0, "b"),
        (g, "s3", 5002.0, "c"),
    ]
    # Another node's lines, after a number: never one's own.
    assert [line[3] for _, line in one.since(0)] == ["c"]
    assert [line[3] for _, line in two.since(0)] == ["old", "a", "b"]
    monkeypatch.setattr(telemetry, "MAX_LINES", 1)
    monkeypatch.setattr(telemetry, "DEFAULT_RETENTION_S", 1000.0)
    # 100.0 is past the default retention; g keeps its newest line only; f's group
    # retention (10 s) drops "a" at 5010.5.
    assert one.trim(5010.5, [(f, 10.0)]) == 3
    assert [line[3] for _, line in one.recent(0)] == ["c"]
    one.forget(g)
    assert one.recent(0) == []
