"""The redis_queue backend: a Redis Streams queue and the worker that reads it."""
