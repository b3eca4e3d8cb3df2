"""Amazon SNS: topics, subscriptions, publishing and delivery (botocore's `sns` model)."""
