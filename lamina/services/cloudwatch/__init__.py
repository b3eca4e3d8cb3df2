"""CloudWatch metrics: the API (provider.py) over the recording in observe/metrics.py."""
