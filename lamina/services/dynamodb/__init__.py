"""DynamoDB and DynamoDB Streams: the operations (provider.py with items.py; streams_api.py
for the `dynamodbstreams` model), the tables and their streams (tables.py, streams.py),
expressions (grammar.py, expressions.py, updates.py, keys.py), values (values.py), rows on
disk (store.py), and how event source mappings read a stream (poll.py)."""
