"""X-Ray: the API (provider.py) over the traces in observe/traces.py."""
