"""Lambda durable executions: the state machine, its service and its API operations."""
