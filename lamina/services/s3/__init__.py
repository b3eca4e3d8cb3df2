"""Amazon S3: buckets, objects, multipart uploads and event notifications."""
