"""`python -m app.tasks.worker`: the redis_queue worker and its dead-letter tool.

The command line lives in `app.tasks.redis_queue.cli`; this module keeps the documented
command working.
"""

from app.tasks.redis_queue.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
