"""License import jobs: a check, then an apply, each with progress the console can poll.

The truth of a job is its ``ImportUpload`` row in PostgreSQL: the uploaded bytes, the status
(queued, checking, previewed, applying, done, failed, cancelled), the error shown to the user,
and the checked plan between the check and the confirm. Redis holds only what may be lost: the
progress counter and the preview shown to the user, which expire ``IMPORT_PREVIEW_MINUTES``
after the last step. The bytes and the plan are dropped once the import is done, failed or
cancelled.

Small files (up to ``IMPORT_BACKGROUND_BYTES``) are checked and applied inside the request, so
the user sees the preview at once; larger ones are queued as a django-tasks task that
``manage.py run_jobs`` runs in a worker process, so a web restart neither loses nor half-applies
one. Both run the same ``run_step``. A step holds a PostgreSQL advisory lock for as long as it
runs; a step whose process died (the lock is gone with its connection, and PostgreSQL rolled
back its transaction) is marked failed when the job is next looked at.
"""

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tasks import TaskResultStatus, task
from django_tasks_db.models import DBTaskResult

from clinical.actions import imports as import_actions
from clinical.actions.imports import STEPPING
from clinical.imports import checks as import_checks
from clinical.imports import files as import_files
from clinical.models import ImportStatus, ImportUpload
from core.audit import Actor
from core.errors import ActionError
from core.redis import get_redis

logger = logging.getLogger(__name__)

KEY = "ops:import:{token}"
RUNNING = (ImportStatus.QUEUED, ImportStatus.CHECKING, ImportStatus.APPLYING)
FINISHED = (ImportStatus.PREVIEWED, ImportStatus.FAILED, ImportStatus.DONE, ImportStatus.CANCELLED)
STALLED_AFTER_SECONDS = 120  # a step with no progress for this long, and no process holding it, died
LOCK_CLASS = 17_017  # first key of the advisory lock a running step holds (the second is the upload id)
UNEXPECTED = "The import stopped on an unexpected error; nothing was written."
STOPPED = {
    ImportStatus.CHECKING: "The worker stopped while checking the file; nothing was written; upload it again.",
    ImportStatus.APPLYING: "The worker stopped while applying; nothing was applied; run it again.",
}


@dataclass
class ImportJob:
    """One file's import: its row in PostgreSQL and its progress in Redis."""

    upload: ImportUpload
    state: dict  # progress: phase, done, total
    waiting_seconds: float | None = None  # how long its step's task has waited for a worker (None: taken)

    @property
    def token(self) -> str:
        return self.upload.token

    @property
    def key(self) -> str:
        return KEY.format(token=self.token)

    @property
    def phase(self) -> str:
        return self.upload.status

    @property
    def file_name(self) -> str:
        return self.upload.file_name

    @property
    def size(self) -> int:
        return self.upload.size

    @property
    def message(self) -> str:
        return self.upload.message

    def counts(self) -> dict:
        return self.upload.counts

    def status(self) -> dict:
        """Return what the progress endpoint reports."""
        done, total = int(self.state.get("done", 0)), int(self.state.get("total", 0))
        running = self.phase in RUNNING
        return {
            "phase": (self.state.get("phase") or self.phase) if running else self.phase,
            "done": done if running else 0,
            "total": total if running else 0,
            "percent": round(100 * done / total) if running and total else None,
            "finished": not running,
            "note": self.no_worker_note() if running else None,
        }

    def no_worker_note(self) -> str | None:
        """Tell the person waiting when no job worker has taken the step for ``OPS_JOBS_ALERT_SECONDS``."""
        if self.waiting_seconds is None or self.waiting_seconds <= settings.OPS_JOBS_ALERT_SECONDS:
            return None
        return (
            f"No job worker has taken this import for {self.waiting_seconds:.0f} s. It starts as soon as one "
            "runs and nothing is lost meanwhile; if this lasts, ask an engineer to check the job worker (run_jobs)."
        )

    def progress(self, phase: str, done: int = 0, total: int = 0) -> None:
        """Record how far the running step got, and that its process is alive."""
        _set_progress(self.key, phase=phase, done=done, total=total)
        import_actions.record_progress(self.upload.pk)

    def preview(self) -> dict | None:
        raw = get_redis().get(f"{self.key}:preview")
        return json.loads(raw) if raw else None


def _set_progress(key: str, **fields) -> None:
    pipe = get_redis().pipeline()
    pipe.hset(key, mapping={name: str(value) for name, value in fields.items()})
    pipe.expire(key, _ttl())
    pipe.execute()


def _ttl() -> int:
    return settings.IMPORT_PREVIEW_MINUTES * 60


# --- actions -----------------------------------------------------------------------------------


def create_job(*, user, file_name: str, data: bytes) -> ImportJob:
    """Keep ``user``'s upload in PostgreSQL and check it (now, or in the worker for a large file)."""
    with transaction.atomic():
        upload = import_actions.create_upload(owner=user, file_name=file_name, data=data)
        _queue(upload, "check")
    _run_inline(upload, "check")
    return get_job(upload.token, user)


def confirm_job(job: ImportJob) -> bool:
    """Apply a checked file without errors; return False if it is not waiting for confirmation."""
    with transaction.atomic():
        if not import_actions.start_applying(job.upload.pk):
            return False
        _queue(job.upload, "apply")
    _set_progress(job.key, phase="applying", done=0, total=0)
    _run_inline(job.upload, "apply")
    return True


def cancel_job(job: ImportJob) -> bool:
    """Abandon a checked file: its bytes, plan and preview are deleted at once."""
    get_redis().delete(f"{job.key}:preview")
    return import_actions.move_upload(job.upload.pk, (ImportStatus.PREVIEWED,), ImportStatus.CANCELLED)


def _in_background(upload: ImportUpload) -> bool:
    return upload.size > settings.IMPORT_BACKGROUND_BYTES


def _queue(upload: ImportUpload, step: str) -> None:
    """Queue a large file's step, in the caller's transaction: the task exists iff the status does."""
    if _in_background(upload):
        result = run_import_step.enqueue(upload.pk, step)
        import_actions.record_task(upload.pk, str(result.id))


def _run_inline(upload: ImportUpload, step: str) -> None:
    """Run a small file's step in the request (well under a second), the same way the worker does."""
    if _in_background(upload):
        return
    try:
        run_step(upload.pk, step)
    except Exception:
        logger.exception("license import %s failed", upload.pk)


# --- selectors ---------------------------------------------------------------------------------


def get_job(token: str, user) -> ImportJob | None:
    """Return the user's job with this token, or None (also for someone else's job).

    A step whose process died is marked failed first, so the user is told.
    """
    upload = ImportUpload.objects.filter(token=token, owner=user).defer("data", "plan").first() if token else None
    if upload is None:
        return None
    if upload.status in STEPPING and _fail_if_stalled(upload):
        upload.refresh_from_db(fields=["status", "message", "updated_at"])
    if upload.status not in RUNNING:
        return ImportJob(upload, {})
    return ImportJob(upload, get_redis().hgetall(KEY.format(token=token)), _waiting_for_worker(upload))


def _waiting_for_worker(upload: ImportUpload) -> float | None:
    """Return how long the upload's queued step has waited for a worker, or None if one took it (or it runs inline)."""
    if not upload.task_id:
        return None
    waiting = DBTaskResult.objects.filter(id=upload.task_id, status=TaskResultStatus.READY)
    enqueued_at = waiting.values_list("enqueued_at", flat=True).first()
    return (timezone.now() - enqueued_at).total_seconds() if enqueued_at else None


def _fail_if_stalled(upload: ImportUpload) -> bool:
    """Mark a step failed if nobody holds it and it made no progress lately; return True if so."""
    failed = import_actions.fail_if_stalled(
        upload, message=STOPPED[upload.status], after_seconds=STALLED_AFTER_SECONDS, lock_class=LOCK_CLASS
    )
    if failed:
        logger.warning("license import %s stalled while %s; marked failed", upload.pk, upload.status)
    return failed


# --- the steps, in the request or in the worker --------------------------------------------------


@task()
def run_import_step(upload_id: int, step: str) -> None:
    """Run one step of a queued import in the job worker (``manage.py run_jobs``)."""
    run_step(upload_id, step)


def run_step(upload_id: int, step: str) -> None:
    """Run ``check`` or ``apply`` for the upload, holding its lock; a failure is shown to the user."""
    with _held(upload_id) as held:
        if not held:
            return  # another process is running this step
        try:
            (_check if step == "check" else _apply)(upload_id)
        except Exception:
            import_actions.move_upload(upload_id, STEPPING, ImportStatus.FAILED, message=UNEXPECTED)
            raise


@contextmanager
def _held(upload_id: int):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, upload_id])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, upload_id])


def _check(upload_id: int) -> None:
    if not import_actions.move_upload(upload_id, (ImportStatus.QUEUED,), ImportStatus.CHECKING):
        return  # already checked, or cancelled
    upload = ImportUpload.objects.get(pk=upload_id)
    job = ImportJob(upload, {})
    try:
        preview = import_checks.check_license_file(
            bytes(upload.data), upload.file_name, max_rows=settings.IMPORT_MAX_ROWS, progress=job.progress
        )
    except import_files.FileError as error:
        import_actions.move_upload(upload_id, STEPPING, ImportStatus.FAILED, message=str(error)[:2000])
        return
    get_redis().set(f"{job.key}:preview", json.dumps(preview.to_json(), default=str), ex=_ttl())
    plan = None if preview.has_errors else preview.plan
    import_actions.move_upload(upload_id, STEPPING, ImportStatus.PREVIEWED, counts=preview.counts, plan=plan)


def _apply(upload_id: int) -> None:
    upload = ImportUpload.objects.select_related("owner").get(pk=upload_id)
    if upload.status != ImportStatus.APPLYING or upload.plan is None:
        return  # already applied, or given up
    try:
        with transaction.atomic():  # the licenses and the outcome commit together, or neither
            counts = import_checks.apply_license_plan(
                upload.plan, actor=Actor.staff(upload.owner), file_name=upload.file_name
            )
            if not import_actions.move_upload(
                upload_id, (ImportStatus.APPLYING,), ImportStatus.DONE, counts=counts, message=""
            ):
                raise ActionError("This import was given up while it was applying.")
    except ActionError as error:
        import_actions.move_upload(
            upload_id, (ImportStatus.APPLYING,), ImportStatus.FAILED, message=f"Nothing was written: {error}"
        )
        return
    get_redis().delete(f"{KEY.format(token=upload.token)}:preview")
