"""The console floor for ``bench_load``: support agents, clinical ops and a lead, as Locust users.

Run by ``manage.py bench_load`` in a Locust process of its own (gevent stays out of the console's
processes). Each user signs in through the login form with a bench account of its role, then
works the way that role does, with a person's think time between pages:

- support agents: search a patient by name (the list's search box) and by phone (the global
  search), open patients and visits (their timelines are on the visit's page), read a visit's
  history, open a support case and add a note;
- clinical ops: the license list, a license looked up by NPI, a license's form, a license saved;
- the lead: the live queues page, then its numbers every 3 s (the page's polling fallback).

Every request is named by its page kind, which is what the bench reports. Which records they
open comes from ``OPS_LOAD_SAMPLES`` (a JSON file bench_load writes from the data set).
"""

import itertools
import json
import os
import random

from locust import HttpUser, between, constant, task

from devtools.htmlforms import form_fields

ADMIN = "/" + os.environ.get("OPS_ADMIN_PATH", "ops/").strip("/") + "/"
with open(os.environ["OPS_LOAD_SAMPLES"]) as samples_file:
    SAMPLES = json.load(samples_file)
_accounts = {role: itertools.count() for role in SAMPLES["accounts"]}


class ConsoleUser(HttpUser):
    """A signed-in console user of one role."""

    abstract = True
    role = ""

    def on_start(self):
        accounts = SAMPLES["accounts"][self.role]
        username = accounts[next(_accounts[self.role]) % len(accounts)]
        self.client.get(f"{ADMIN}login/", name="sign-in page")
        answer = self.post(f"{ADMIN}login/", {"username": username, "password": SAMPLES["password"], "next": ADMIN},
                           name="sign in")  # fmt: skip
        if answer.status_code != 302:
            raise RuntimeError(f"{username} could not sign in: {answer.status_code}")

    def post(self, path: str, fields: dict, *, name: str, **options):
        """Submit a form as the browser does: its CSRF token and the page as Referer."""
        token = self.client.cookies.get("csrftoken", "")
        headers = {"Referer": f"{self.host}{path}"}
        return self.client.post(path, data={**fields, "csrfmiddlewaretoken": token}, headers=headers, name=name,
                                allow_redirects=False, **options)  # fmt: skip

    def save(self, path: str, fields: dict, *, name: str) -> None:
        """Submit a change form; an answer that is not the redirect of a save is an error."""
        with self.post(path, fields, name=name, catch_response=True) as saved:
            if saved.status_code != 302:
                saved.failure(f"not saved: {saved.status_code}")

    def save_form(self, path: str, form_id: str, changes: dict, *, page: str, save: str) -> None:
        """Open a change form, change some fields, save it."""
        answer = self.client.get(path, name=page)
        if answer.status_code != 200:
            return
        fields = {**form_fields(answer.text, form_id), **changes, "_continue": "Save and continue editing"}
        self.save(path, fields, name=save)


class SupportAgent(ConsoleUser):
    """Finds patients and visits for callers, reads timelines and history, notes cases."""

    role = "support"
    weight = 40
    wait_time = between(4, 12)

    @task(4)
    def search_by_name(self):
        self.client.get(f"{ADMIN}clinical/patient/?q={random.choice(SAMPLES['surnames'])}",
                        name="patient search, by name")  # fmt: skip

    @task(2)
    def search_by_phone(self):
        self.client.get(
            f"{ADMIN}search/", params={"q": random.choice(SAMPLES["phones"])}, name="global search, by phone"
        )

    @task(4)
    def patient(self):
        self.client.get(f"{ADMIN}clinical/patient/{random.choice(SAMPLES['patients'])}/change/", name="patient page")

    @task(3)
    def visit(self):
        self.client.get(f"{ADMIN}clinical/visit/{random.choice(SAMPLES['visits'])}/change/",
                        name="visit page, with its timeline")  # fmt: skip

    @task(1)
    def visit_history(self):
        self.client.get(f"{ADMIN}clinical/visit/{random.choice(SAMPLES['visits'])}/history/", name="visit history")

    @task(1)
    def case_note(self):
        case = random.choice(SAMPLES["cases"])
        path = f"{ADMIN}support/supportcase/{case}/change/"
        answer = self.client.get(path, name="support case page")
        if answer.status_code != 200:
            return
        fields = form_fields(answer.text, "supportcase_form")
        if "note" not in fields:
            return
        fields |= {"note": "Called the patient back; gave them the visit's status.", "_continue": "Save"}
        self.save(path, fields, name="support case note added")


class ClinicalOps(ConsoleUser):
    """Keeps licenses right: looks them up, opens them, saves a correction."""

    role = "clinops"
    weight = 8
    wait_time = between(5, 15)

    @task(2)
    def license_list(self):
        self.client.get(f"{ADMIN}clinical/providerlicense/", name="license list")

    @task(2)
    def license_search(self):
        self.client.get(f"{ADMIN}clinical/providerlicense/?q={random.choice(SAMPLES['npis'])}",
                        name="license search, by NPI")  # fmt: skip

    @task(2)
    def license_page(self):
        self.client.get(f"{ADMIN}clinical/providerlicense/{random.choice(SAMPLES['licenses'])}/change/",
                        name="license page")  # fmt: skip

    @task(1)
    def license_save(self):
        path = f"{ADMIN}clinical/providerlicense/{random.choice(SAMPLES['licenses'])}/change/"
        note = f"Board record checked {random.randint(1, 28)} Nov."
        self.save_form(path, "providerlicense_form", {"notes": note}, page="license page", save="license saved")


class Lead(ConsoleUser):
    """Watches the live queues: the page, then its numbers every 3 s."""

    role = "lead"
    weight = 2
    wait_time = constant(3)

    @task(1)
    def live_page(self):
        self.client.get(f"{ADMIN}live/", name="live queues page")

    @task(10)
    def live_numbers(self):
        self.client.get(f"{ADMIN}live/data.json", name="live queues numbers (poll)")
