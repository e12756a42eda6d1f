"""What the search backend keeps beside the clinical tables: the patients' distinct names."""

from django.db import models


class PatientName(models.Model):
    """One distinct name (first, last) among the patients, with how many patients bear it.

    Kept by statement triggers on ``clinical_patient`` (migration ``search.0007``), in the
    transaction that inserts, renames or deletes patients, so it is never stale. A name search
    scores these names instead of every patient who bears one: at a million patients, the
    3,584 Smiths have 330 names, and a page of them is the patients of its first few names.
    """

    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    patients = models.PositiveIntegerField()

    class Meta:
        constraints = [
            # The triggers' upsert (ON CONFLICT), and a name's patients looked up by name.
            models.UniqueConstraint(fields=["last_name", "first_name"], name="search_patientname_key"),
        ]

    def __str__(self):
        return f"{self.first_name} {self.last_name} ({self.patients})"
