"""The pure parts of queues, streams and mappings: digests, hash ranges, sequence numbers,
partial batch responses."""

from __future__ import annotations

import hashlib
import itertools

from lamina.engine.pollers.base import item_failures
from lamina.engine.pollers.stream import lane_of
from lamina.services.kinesis.streams import hash_ranges, parse_sequence, sequence_number, shard_id
from lamina.services.sqs.messages import md5_of_attributes, wanted


def test_message_attribute_digest_matches_aws() -> None:
    # A digest AWS returned for this attribute (recorded by SDK and emulator test suites).
    attributes = {"timestamp": {"DataType": "Number", "StringValue": "1493147359900"}}
    assert md5_of_attributes(attributes) == "235c5c510d26fb653d073faed50ae77c"


def test_message_attribute_digest_sorts_names_and_marks_binary() -> None:
    one = {
        "b": {"DataType": "Binary", "BinaryValue": b"\x00"},
        "a": {"DataType": "String", "StringValue": "x"},
    }
    two = {"a": one["a"], "b": one["b"]}
    assert md5_of_attributes(one) == md5_of_attributes(two)
    as_text = {"b": {"DataType": "Binary", "StringValue": "\x00"}, "a": one["a"]}
    assert md5_of_attributes(one) != md5_of_attributes(as_text)


def test_attribute_name_filters() -> None:
    assert wanted(["All"], "anything")
    assert wanted([".*"], "anything")
    assert wanted(["meta.*"], "meta.color")
    assert not wanted(["meta.*"], "metadata")
    assert wanted(["size"], "size") and not wanted(["size"], "sizes")


def test_hash_ranges_cover_the_key_space() -> None:
    for count in (1, 3, 4, 7):
        ranges = hash_ranges(count)
        assert ranges[0][0] == 0
        assert ranges[-1][1] == 2**128 - 1
        for (_, end), (start, _) in itertools.pairwise(ranges):
            assert end + 1 == start
    # AWS's split of 2 shards.
    assert hash_ranges(2)[1][0] == 170141183460469231731687303715884105728


def test_sequence_numbers_round_trip_and_grow() -> None:
    numbers = [sequence_number(3, n) for n in range(5)]
    assert all(len(s) == 56 and s.isdigit() for s in numbers)
    assert [int(s) for s in numbers] == sorted(int(s) for s in numbers)
    assert [parse_sequence(s) for s in numbers] == [(3, n) for n in range(5)]
    assert parse_sequence("12") is None
    assert parse_sequence("not a number") is None
    assert shard_id(12) == "shardId-000000000012"


def test_partial_batch_responses_follow_aws_rules() -> None:
    ids = ["a", "b", "c"]
    # Complete success.
    for payload in (
        b"",
        b"null",
        b"{}",
        b'{"batchItemFailures": []}',
        b'{"batchItemFailures": null}',
    ):
        assert item_failures(payload, ids) == set()
    assert item_failures(b'{"batchItemFailures": [{"itemIdentifier": "b"}]}', ids) == {"b"}
    # Complete failure: invalid JSON, empty, null or unknown identifiers.
    for payload in (
        b"not json",
        b'{"batchItemFailures": [{"itemIdentifier": ""}]}',
        b'{"batchItemFailures": [{"itemIdentifier": null}]}',
        b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}',
        b'{"batchItemFailures": [{"id": "a"}]}',
        b'{"batchItemFailures": "a"}',
        b"[1]",
    ):
        assert item_failures(payload, ids) is None, payload


def test_lanes_are_stable_per_partition_key() -> None:
    assert lane_of("any", 1) == 0
    keys = [f"key-{i}" for i in range(200)]
    lanes = [lane_of(k, 4) for k in keys]
    assert lanes == [lane_of(k, 4) for k in keys]
    assert set(lanes) == {0, 1, 2, 3}
    expected = int.from_bytes(hashlib.md5(b"key-0").digest()[:8]) % 4
    assert lane_of("key-0", 4) == expected
