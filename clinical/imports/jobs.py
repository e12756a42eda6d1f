"""License import jobs: a check, then an apply, each with progress the console can poll.

A job lives in Redis (disposable working state, like the router's), never on disk: a hash with
its owner, file name, phase and progress, plus, between the check and the confirm, the checked
preview and the plan. The uploaded bytes stay in the web process's memory for the check only.
Everything expires ``IMPORT_PREVIEW_MINUTES`` after the last step, and the preview and plan are
deleted as soon as the import is applied or cancelled, so an abandoned import leaves nothing.

Small files run inside the request; larger ones (``IMPORT_BACKGROUND_BYTES``) in a thread of
the web process, so the page shows progress instead of hanging.
"""

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

from clinical.imports import checks as import_checks
from clinical.imports import files as import_files
from core.audit import Actor
from core.errors import ActionError
from core.redis import get_redis

logger = logging.getLogger(__name__)

KEY = "ops:import:{token}"
RUNNING = ("queued", "reading", "checking", "matching", "applying")
FINISHED = ("previewed", "failed", "done", "cancelled")
STALLED_AFTER_SECONDS = 120  # a running job with no progress for this long lost its process


@dataclass
class ImportJob:
    """One file's import, as stored in Redis; ``token`` is its unguessable id in URLs."""

    token: str
    state: dict

    @property
    def key(self) -> str:
        return KEY.format(token=self.token)

    @property
    def phase(self) -> str:
        return self.state.get("phase", "")

    @property
    def file_name(self) -> str:
        return self.state.get("file_name", "")

    @property
    def size(self) -> int:
        return int(self.state.get("size", 0))

    @property
    def stalled(self) -> bool:
        """Return True if the job is running but its process stopped reporting (e.g. a restart)."""
        return self.phase in RUNNING and time.time() - float(self.state.get("updated", 0)) > STALLED_AFTER_SECONDS

    def progress(self, phase: str, done: int = 0, total: int = 0) -> None:
        """Record the job's phase and how far it got."""
        self._set(phase=phase, done=done, total=total)

    def status(self) -> dict:
        """Return what the progress endpoint reports."""
        done, total = int(self.state.get("done", 0)), int(self.state.get("total", 0))
        return {
            "phase": "failed" if self.stalled else self.phase,
            "done": done,
            "total": total,
            "percent": round(100 * done / total) if total else None,
            "finished": self.phase in FINISHED or self.stalled,
        }

    def save_preview(self, preview: dict, plan: dict) -> None:
        """Keep the checked preview and its plan until the user confirms, cancels or walks away."""
        r, ttl = get_redis(), _ttl()
        pipe = r.pipeline()
        pipe.set(f"{self.key}:preview", json.dumps(preview, default=str), ex=ttl)
        pipe.set(f"{self.key}:plan", json.dumps(plan), ex=ttl)
        pipe.execute()
        counts = preview["counts"]
        self._set(phase="previewed", has_errors=int(counts["error"] > 0), counts=json.dumps(counts))

    def preview(self) -> dict | None:
        raw = get_redis().get(f"{self.key}:preview")
        return json.loads(raw) if raw else None

    def claim_plan(self) -> dict | None:
        """Take the plan for applying; return None if it is gone or another request took it first."""
        raw = get_redis().getdel(f"{self.key}:plan")
        return json.loads(raw) if raw else None

    def finish(self, phase: str, *, message: str = "", counts: dict | None = None) -> None:
        """End the job (``done``, ``failed`` or ``cancelled``) and drop whatever the file said."""
        get_redis().delete(f"{self.key}:preview", f"{self.key}:plan")
        fields = {"phase": phase, "message": message[:2000]}
        if counts is not None:
            fields["counts"] = json.dumps(counts)
        self._set(**fields)

    def counts(self) -> dict:
        return json.loads(self.state.get("counts") or "{}")

    def _set(self, **fields) -> None:
        fields["updated"] = time.time()
        self.state.update({key: str(value) for key, value in fields.items()})
        pipe = get_redis().pipeline()
        pipe.hset(self.key, mapping=fields)
        pipe.expire(self.key, _ttl())
        pipe.execute()


def _ttl() -> int:
    return settings.IMPORT_PREVIEW_MINUTES * 60


def create_job(*, user, file_name: str, size: int) -> ImportJob:
    """Start a job for ``user``'s upload."""
    job = ImportJob(secrets.token_urlsafe(18), {})
    job._set(user=user.pk, file_name=file_name, size=size, phase="queued")
    return job


def get_job(token: str, user) -> ImportJob | None:
    """Return the user's job with this token, or None (also for someone else's job)."""
    state = get_redis().hgetall(KEY.format(token=token)) if token else {}
    if not state or state.get("user") != str(user.pk):
        return None
    return ImportJob(token, state)


def check_file(job: ImportJob, data: bytes) -> None:
    """Check the job's file and keep its preview (and, when it has no errors, its plan)."""
    try:
        preview = import_checks.check_license_file(
            data, job.file_name, max_rows=settings.IMPORT_MAX_ROWS, progress=job.progress
        )
    except import_files.FileError as error:
        job.finish("failed", message=str(error))
        return
    job.save_preview(preview.to_json(), {} if preview.has_errors else preview.plan)


def apply_plan(job: ImportJob, plan: dict, *, actor: Actor) -> None:
    """Apply a claimed plan in one transaction; a refusal ends the job with nothing written."""
    try:
        counts = import_checks.apply_license_plan(plan, actor=actor, file_name=job.file_name)
    except ActionError as error:
        job.finish("failed", message=f"Nothing was written: {error}")
        return
    job.finish("done", counts=counts)


def run(job: ImportJob, work: Callable[[ImportJob], None]) -> None:
    """Run ``work(job)`` now for a small file, or in a background thread for a large one."""
    if job.size <= settings.IMPORT_BACKGROUND_BYTES:
        _run(job, work)
        return
    threading.Thread(target=_run_in_thread, args=(job, work), name=f"import-{job.token[:6]}", daemon=True).start()


def _run(job: ImportJob, work: Callable[[ImportJob], None]) -> None:
    try:
        work(job)
    except Exception:
        logger.exception("license import %s failed", job.token[:6])
        job.finish("failed", message="The import stopped on an unexpected error; nothing was written.")


def _run_in_thread(job: ImportJob, work: Callable[[ImportJob], None]) -> None:
    try:
        _run(job, work)
    finally:
        connections.close_all()  # this thread's own connections
