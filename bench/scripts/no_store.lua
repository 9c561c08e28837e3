-- wrk: a GET past the response cache (request no-store), so the route's @cached read answers.
wrk.headers["Cache-Control"] = "no-store"
