"""Lamina: a self-hosted function platform that speaks AWS Lambda's APIs."""
