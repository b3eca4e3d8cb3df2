"""SQS queues: the operations (provider.py), the queues and the state machine of their
messages (queue.py, queues.py, messages.py), the checks of a request (attributes.py),
their rows on disk (store.py), and how event source mappings read them (poll.py)."""
