"""Kinesis data streams: the operations (provider.py), the streams and their shards
(streams.py), their records on disk (store.py), and how event source mappings read them
(poll.py)."""
