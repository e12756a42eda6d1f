"""Background license imports: the upload in PostgreSQL, the steps run by the job worker (``run_jobs``).

The worker is a process of its own (``manage.py run_jobs --batch``) on the test database: nothing
in this, the web side's, process is needed to finish a job.
"""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import psycopg2
import pytest
from django.conf import settings
from django.db.models.functions import Now
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from clinical.imports import jobs as import_jobs
from clinical.models import ImportUpload, ProviderLicense
from tests.builders import make_provider
from tests.clinical.processes import BASE_DIR, database_url
from tests.clinical.test_import_export import _csv, _job_url, _row, _token, _upload


@pytest.fixture
def large(settings):
    """Count every file as large: its check and apply go through the queue."""
    settings.IMPORT_BACKGROUND_BYTES = 0


def _worker_env() -> dict:
    return {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL, "DJANGO_DEBUG": "0"}


def _run_worker() -> None:
    """Run every queued task in a worker process of its own, then let it exit."""
    command = [sys.executable, "manage.py", "run_jobs", "--batch", "--no-startup-delay", "--interval", "0"]
    subprocess.run(command, cwd=BASE_DIR, env=_worker_env(), capture_output=True, timeout=120, check=True)  # noqa: S603


def _licenses_file(count: int = 5) -> tuple[list, bytes]:
    providers = [make_provider(states=()) for _ in range(count)]
    rows = [_row(p, state, f"{state}-{i}") for i, p in enumerate(providers) for state in ("CA", "NV", "OR", "WA")]
    return providers, _csv(rows)


def _task(upload: ImportUpload) -> DBTaskResult:
    return DBTaskResult.objects.get(id=upload.task_id)


def test_it_queues_a_large_import_as_a_task_with_its_upload_in_postgresql(client, clinical_ops, redis_client, large):
    _, data = _licenses_file(1)
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, data, "big.csv"))
    upload = ImportUpload.objects.get(token=_token(job_url))
    assert (upload.owner, upload.file_name, upload.size, upload.status) == (
        clinical_ops,
        "big.csv",
        len(data),
        "queued",
    )
    assert bytes(upload.data) == data and len(upload.sha256) == 64
    task = _task(upload)
    assert (task.status, task.args_kwargs["args"]) == (TaskResultStatus.READY, [upload.pk, "check"])
    assert client.get(f"{job_url}progress/").json() == {
        "phase": "queued", "done": 0, "total": 0, "percent": None, "finished": False, "note": None,
    }  # fmt: skip


def test_it_checks_and_applies_a_queued_import_in_the_worker_process(
    transactional_db, client, clinical_ops, redis_client, large
):
    providers, data = _licenses_file()
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, data, "big.csv"))
    redis_client.flushdb()  # the web side's working state is gone too: the job needs only its row
    _run_worker()
    assert client.get(job_url).context["preview"]["counts"]["new"] == 20
    assert not ProviderLicense.objects.filter(provider__in=providers).exists()
    assert client.post(f"{job_url}confirm/").status_code == 302
    upload = ImportUpload.objects.get(token=_token(job_url))
    assert (upload.status, _task(upload).args_kwargs["args"]) == ("applying", [upload.pk, "apply"])
    assert client.get(f"{job_url}progress/").json()["finished"] is False
    _run_worker()
    assert client.get(f"{job_url}progress/").json()["phase"] == "done"
    assert "20 new, 0 updated" in client.get(job_url).content.decode()
    assert ProviderLicense.objects.filter(provider__in=providers).count() == 20
    upload.refresh_from_db()
    assert (bytes(upload.data), upload.plan, _task(upload).status) == (b"", None, TaskResultStatus.SUCCESSFUL)


def _applying(client, clinical_ops) -> tuple[str, ImportUpload]:
    """Check a file and confirm it, then leave its apply as a worker that died would: RUNNING."""
    _, data = _licenses_file(2)
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, data))
    import_jobs.run_step(ImportUpload.objects.get(token=_token(job_url)).pk, "check")
    client.post(f"{job_url}confirm/")
    upload = ImportUpload.objects.get(token=_token(job_url))
    DBTaskResult.objects.filter(id=upload.task_id).update(status=TaskResultStatus.RUNNING, started_at=Now())
    return job_url, upload


def _age(upload: ImportUpload) -> None:
    old = Now() - timedelta(seconds=import_jobs.STALLED_AFTER_SECONDS + 1)
    ImportUpload.objects.filter(pk=upload.pk).update(updated_at=old)


def test_it_reports_a_job_left_running_by_a_dead_worker_as_failed_with_nothing_applied(
    client, clinical_ops, redis_client, large
):
    job_url, upload = _applying(client, clinical_ops)
    assert client.get(f"{job_url}progress/").json()["finished"] is False  # lately alive: give it time
    _age(upload)
    assert client.get(f"{job_url}progress/").json()["phase"] == "failed"
    html = client.get(job_url).content.decode()
    assert "The worker stopped while applying; nothing was applied; run it again." in html
    assert not ProviderLicense.history.filter(history_change_reason="import licenses.csv").exists()
    upload.refresh_from_db()
    assert (upload.status, bytes(upload.data), upload.plan) == ("failed", b"", None)
    assert _task(upload).status == TaskResultStatus.FAILED
    import_jobs.run_step(upload.pk, "apply")  # a late retry of the task applies nothing
    assert not ProviderLicense.history.filter(history_change_reason="import licenses.csv").exists()


def test_it_leaves_a_long_apply_alone_while_its_worker_holds_it(client, clinical_ops, redis_client, large):
    job_url, upload = _applying(client, clinical_ops)
    _age(upload)
    worker = psycopg2.connect(database_url())  # a live worker, busy applying
    try:
        worker.autocommit = True
        worker.cursor().execute("SELECT pg_advisory_lock(%s, %s)", [import_jobs.LOCK_CLASS, upload.pk])
        assert client.get(f"{job_url}progress/").json() == {
            "phase": "applying", "done": 0, "total": 0, "percent": None, "finished": False, "note": None,
        }  # fmt: skip
    finally:
        worker.close()
    assert client.get(f"{job_url}progress/").json()["phase"] == "failed"  # its connection closed: it died


def test_it_tells_the_person_waiting_when_no_worker_takes_the_job_and_keeps_it_queued(
    transactional_db, client, clinical_ops, redis_client, large, settings
):
    _, data = _licenses_file(1)
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, data, "big.csv"))
    upload = ImportUpload.objects.get(token=_token(job_url))
    assert client.get(f"{job_url}progress/").json()["note"] is None  # just queued: no worry yet

    long_ago = Now() - timedelta(seconds=max(settings.OPS_JOBS_ALERT_SECONDS, import_jobs.STALLED_AFTER_SECONDS) + 1)
    DBTaskResult.objects.filter(id=upload.task_id).update(enqueued_at=long_ago)
    ImportUpload.objects.filter(pk=upload.pk).update(updated_at=long_ago)
    status = client.get(f"{job_url}progress/").json()

    assert (status["phase"], status["finished"]) == ("queued", False)  # waiting for a worker, not dead
    assert status["note"].startswith("No job worker has taken this import for ")
    assert "check the job worker (run_jobs)" in client.get(job_url).content.decode()
    _run_worker()  # a worker comes back: the job runs as if nothing happened
    assert client.get(f"{job_url}progress/").json() == {
        "phase": "previewed", "done": 0, "total": 0, "percent": None, "finished": True, "note": None,
    }  # fmt: skip


def test_it_stops_the_worker_cleanly_on_sigterm(transactional_db):
    worker = subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "run_jobs", "--no-startup-delay"],
        cwd=BASE_DIR, env=_worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert "Starting worker" in worker.stdout.readline()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
