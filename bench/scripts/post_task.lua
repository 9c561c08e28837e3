-- wrk: POST /api/v1/tasks with a no-op task.
wrk.method = "POST"
wrk.body = '{"name": "add", "payload": {"a": 1, "b": 2}}'
wrk.headers["Content-Type"] = "application/json"
