"""License import jobs: every change of an ``ImportUpload``'s status (``clinical.imports.jobs`` runs the steps).

Each change is conditional on the status it leaves (``UPDATE … WHERE status IN …``), so a late
worker, a retried task or a second click changes nothing once another has moved the job on.
"""

import hashlib
import secrets

from django.db import connection, transaction
from django.db.models.functions import Now
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from clinical.models import ImportStatus, ImportUpload

STEPPING = (ImportStatus.CHECKING, ImportStatus.APPLYING)  # a process is (or was) working on it
ENDED = (ImportStatus.DONE, ImportStatus.FAILED, ImportStatus.CANCELLED)


def create_upload(*, owner, file_name: str, data: bytes) -> ImportUpload:
    """Keep an uploaded file in PostgreSQL, queued for its check."""
    return ImportUpload.objects.create(
        token=secrets.token_urlsafe(18), owner=owner, file_name=file_name, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), data=data,
    )  # fmt: skip


def move_upload(upload_id: int, from_: tuple, to: str, **fields) -> bool:
    """Change the upload's status if it is still one of ``from_``; return whether it changed.

    An ended import drops the file's content and its plan: they are no longer needed.
    """
    if to in ENDED:
        fields.update(data=b"", plan=None)
    moved = ImportUpload.objects.filter(pk=upload_id, status__in=from_).update(status=to, updated_at=Now(), **fields)
    return moved == 1


def start_applying(upload_id: int) -> bool:
    """Move a checked file without errors to applying; return False if it is not waiting for confirmation."""
    ready = ImportUpload.objects.filter(pk=upload_id, status=ImportStatus.PREVIEWED, counts__error=0)
    return bool(ready.filter(plan__isnull=False).update(status=ImportStatus.APPLYING, updated_at=Now()))


def record_progress(upload_id: int) -> None:
    """Note that the step running on the upload is alive (its ``updated_at``; the status stays)."""
    ImportUpload.objects.filter(pk=upload_id, status__in=STEPPING).update(updated_at=Now())


def record_task(upload_id: int, task_id: str) -> None:
    """Remember the queued task that runs the upload's next step."""
    ImportUpload.objects.filter(pk=upload_id).update(task_id=task_id)


_STALLED_SQL = f"""
    UPDATE clinical_importupload SET status = 'failed', message = %s, data = '', plan = NULL, updated_at = now()
    WHERE id = %s AND status = %s AND updated_at < now() - make_interval(secs => %s)
      AND NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s
                      AND objid = %s AND objsubid = 2)
      -- a step whose task no worker has taken yet is waiting, not dead: it runs when a worker does
      AND NOT EXISTS (SELECT 1 FROM {DBTaskResult._meta.db_table} task
                      WHERE task.id::text = clinical_importupload.task_id AND task.status = 'READY')
"""  # noqa: S608 - the only name put in is the task model's own table


def fail_if_stalled(upload: ImportUpload, *, message: str, after_seconds: int, lock_class: int) -> bool:
    """Mark the upload's step failed if no process holds its lock and it made no progress for
    ``after_seconds``; return True if so. Its task, left RUNNING by the dead worker, is failed too.
    A step whose task is still waiting for a worker is left alone.
    """
    params = [message, upload.pk, upload.status, after_seconds, lock_class, upload.pk]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_STALLED_SQL, params)
        if cursor.rowcount != 1:
            return False
        if upload.task_id:
            stopped = DBTaskResult.objects.filter(id=upload.task_id, status=TaskResultStatus.RUNNING)
            stopped.update(status=TaskResultStatus.FAILED, finished_at=Now())
    return True
