"""Event source mappings, the engine's side: pollers that read queues and streams and
invoke functions with batches, through the same leases as every invocation.

    sources.py   what a poller needs of a source and of its function (Protocols)
    base.py      a poller's task, graceful stop, throttle waits, statistics
    queue.py     SQS: batches in flight that scale, FIFO groups in order
    stream.py    streams: a reader per shard, a batch in flight per lane, checkpoints
    manager.py   `Pollers`: every poller, matched to the mappings' records
"""
