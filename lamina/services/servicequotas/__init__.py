"""The Service Quotas API for Lambda's concurrent executions quota (L-B99A9384)."""
