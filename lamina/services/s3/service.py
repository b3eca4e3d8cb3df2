"""S3's parts, built together for the composition root: the store, buckets and objects,
code from a bucket for Lambda, and (given the targets it delivers to) the provider and
the notifier."""

from __future__ import annotations

from pathlib import Path

from lamina.clock import Clock
from lamina.deliveries import FunctionInvoker, QueueSender, TopicPublisher
from lamina.services.s3.buckets import Buckets
from lamina.services.s3.code import CodeObjects
from lamina.services.s3.notifications import EventBus, Notifier
from lamina.services.s3.objects import Objects
from lamina.services.s3.provider import S3Provider
from lamina.services.s3.store import ObjectStore
from lamina.store.database import Database


class S3:
    def __init__(
        self, data_dir: Path, db: Database | None, clock: Clock, objects: Path | None = None
    ) -> None:
        self.clock = clock
        self.store = ObjectStore(data_dir, db, objects)  # objects: a cluster's shared dir
        self.buckets = Buckets(self.store)
        self.objects = Objects(self.store, clock)
        self.code = CodeObjects(self.buckets, self.objects)  # Code.S3Bucket / S3Key

    def provider(
        self, functions: FunctionInvoker, queues: QueueSender, topics: TopicPublisher
    ) -> S3Provider:
        return S3Provider(self.buckets, self.objects, self.clock, functions, queues, topics)

    def notifier(
        self,
        functions: FunctionInvoker,
        queues: QueueSender,
        topics: TopicPublisher,
        buses: EventBus,
    ) -> Notifier:
        return Notifier(self.store, self.clock, functions, queues, topics, buses)
