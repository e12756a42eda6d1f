"""Indexes the PostgreSQL search backend needs on the clinical and support tables.

Built CONCURRENTLY (so outside a transaction) to leave the tables writable on a live database.
"""

from django.db import migrations

# (name, table, method and expression, the query that needs it)
INDEXES = [
    ("search_patient_name_trgm_idx", "clinical_patient",
     "gin (search_person_name(first_name, last_name) gin_trgm_ops)",
     "patient search: a name typed in any order or misspelled (trigram %)"),
    ("search_patient_name_fts_idx", "clinical_patient",
     "gin (search_name_vector(first_name, last_name))",
     "patient search: the start of each name word (prefix tsquery)"),
    ("search_patient_email_idx", "clinical_patient", "btree (lower(email))",
     "patient search: an e-mail typed in any case"),
    ("search_provider_name_trgm_idx", "clinical_provider",
     "gin (search_person_name(first_name, last_name) gin_trgm_ops)",
     "provider search: a name typed in any order or misspelled (trigram %)"),
    ("search_provider_name_fts_idx", "clinical_provider",
     "gin (search_name_vector(first_name, last_name))",
     "provider search: the start of each name word (prefix tsquery)"),
    ("search_provider_email_idx", "clinical_provider", "btree (lower(email))",
     "provider search: an e-mail typed in any case"),
    ("search_provider_phone_idx", "clinical_provider", "btree (phone)",
     "provider search: a phone number, normalised to E.164"),
    ("search_license_key_idx", "clinical_providerlicense", "btree (search_license_key(license_number))",
     "provider search: a license number typed with or without dashes, in any case"),
    ("search_case_subject_fts_idx", "support_supportcase", "gin (search_subject_vector(subject))",
     "support case search: words of the subject"),
]


def _create(name, table, definition, purpose):
    return migrations.RunSQL(
        [f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} USING {definition}",
         f"COMMENT ON INDEX {name} IS '{purpose}'"],
        f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
    )


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("search", "0001_initial"),
        ("clinical", "0004_live_queue_indexes"),
        ("support", "0001_initial"),
    ]

    operations = [_create(*index) for index in INDEXES]
