"""CloudWatch Logs: the API (provider.py) over functions' logs in observe/logs.py."""
