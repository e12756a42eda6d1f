"""Run the job worker: django-tasks-db's ``db_worker`` with the console's defaults.

It takes queued tasks (background license imports, any later long job) from PostgreSQL one at a
time. SIGTERM or Ctrl-C stops it cleanly: at once when idle, after the current task otherwise; a
second signal stops the task too, whose transaction PostgreSQL then rolls back (the import is
reported failed, nothing applied). ``db_worker``'s options all apply (``--batch`` to run what is
queued and exit).
"""

import os
import socket

from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand


class Command(DbWorkerCommand):
    help = "Run queued background jobs (license imports) until stopped."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(
            queue_name="*",  # every queue: one kind of worker for every job
            reload=False,  # a reload kills a running task; restart the worker to load new code
            worker_id=f"{socket.gethostname()}:{os.getpid()}"[:64],  # who holds a task, in the task's row
        )
