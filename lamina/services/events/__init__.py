"""Amazon EventBridge (`events`): event buses, rules with event patterns and schedules,
targets, PutEvents."""
