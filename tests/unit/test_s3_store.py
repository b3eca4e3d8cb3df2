"""S3's store on both of its databases (SQLite, and the cluster's PostgreSQL): buckets
claimed once across accounts, keys listed in byte order, the outbox claimed by one
deliverer at a time."""

from __future__ import annotations

from pathlib import Path

from lamina.services.s3.store import CLAIM_S, ObjectStore
from lamina.store.database import Database
from tests.unit.test_stores import shared  # the fixture, on both databases

__all__ = ["shared"]


def test_buckets_objects_and_listing(tmp_path: Path, shared: Database | None) -> None:
    store = ObjectStore(tmp_path, shared)
    assert store.insert_bucket("b", "111111111111", "us-east-1", {"created": 1.0})
    assert not store.insert_bucket("b", "222222222222", "us-east-1", {"created": 2.0})
    assert store.bucket("b") == ("111111111111", "us-east-1", {"created": 1.0})
    keys = ["a", "B", "b/1", "b/2", "é", "z", "~"]
    for key in keys:
        assert store.put_object("b", key, {"file": key, "size": 1}, []) is None
    old = store.put_object("b", "a", {"file": "a2", "size": 2}, [])
    assert old == {"file": "a", "size": 1}
    listed = [k for k, _ in store.list_objects("b", "", "", 100)]
    assert listed == sorted(keys, key=lambda k: k.encode())  # bytes: "B" < "a" < "z" < "~" < "é"
    assert [k for k, _ in store.list_objects("b", "b/", "", 100)] == ["b/1", "b/2"]
    assert [k for k, _ in store.list_objects("b", "", "b/1", 2)] == ["b/2", "z"]
    assert not store.delete_bucket("b")  # not empty
    for key in keys:
        store.delete_object("b", key, [])
    assert store.delete_bucket("b")
    assert store.bucket("b") is None


def test_outbox_is_claimed_then_sent(tmp_path: Path, shared: Database | None) -> None:
    store = ObjectStore(tmp_path, shared)
    heard: list[int] = []
    store.on_outbox.append(lambda: heard.append(1))
    store.insert_bucket("n", "111111111111", "us-east-1", {"created": 1.0})
    store.put_object("n", "k", {"file": "f", "size": 1}, [{"kind": "sqs", "n": 1}])
    store.delete_object("n", "k", [{"kind": "sqs", "n": 2}])
    assert heard == [1, 1]
    first = store.claim(now=100.0)
    assert [row["n"] for _, row in first] == [1, 2]
    assert store.claim(now=101.0) == []  # claimed: nobody else delivers them meanwhile
    store.sent([first[0][0]])
    again = store.claim(now=100.0 + CLAIM_S + 1)  # the claim ran out: delivered again
    assert [row["n"] for _, row in again] == [2]
