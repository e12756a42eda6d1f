# The case list's priority and category filters sorted every case of the value (1.6-1.8x slower at
# 10x the cases, bench_admin --sizes); these give the first page newest first.
# CONCURRENTLY: cases are written while they build.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("support", "0008_access_log_and_security_events_to_core"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="supportcase",
            index=models.Index(fields=["priority", "-created_at", "-id"], name="support_case_priority_idx"),
        ),
        AddIndexConcurrently(
            model_name="supportcase",
            index=models.Index(fields=["category", "-created_at", "-id"], name="support_case_category_idx"),
        ),
    ]
