"""``manage.py seed_demo``: load demo data (idempotent; see ``devtools.seed.demo``)."""

import argparse
import time

from django.core.management.base import BaseCommand, CommandError

from devtools.seed import demo


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


class Command(BaseCommand):
    help = (
        "Load demo providers with licenses, patients, visits with timelines, support cases and one user per "
        "role. Tops up what is missing, so running it again adds nothing."
    )

    def add_arguments(self, parser):
        size = demo.DEFAULT_SIZE
        parser.add_argument("--if-empty", action="store_true", help="Do nothing when any visit already exists.")
        parser.add_argument("--providers", type=_count, default=size.providers, help="Providers (default %(default)s).")
        parser.add_argument("--patients", type=_count, default=size.patients, help="Patients (default %(default)s).")
        parser.add_argument("--visits", type=_count, default=size.visits, help="Visits (default %(default)s).")
        parser.add_argument("--seed", type=int, default=demo.DEFAULT_SEED, help="Random seed (default %(default)s).")

    def handle(self, *args, if_empty, providers, patients, visits, seed, **options):
        if if_empty and demo.demo_data_exists():
            self.stdout.write("Demo data already exists (there are visits); nothing to do.")
            return
        started = time.monotonic()

        def progress(message: str) -> None:
            self.stdout.write(f"[{time.monotonic() - started:5.1f}s] {message}")

        size = demo.DemoSize(providers=providers, patients=patients, visits=visits)
        try:
            tallies = demo.seed_demo(size=size, seed=seed, progress=progress)
        except ValueError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"Demo data ready in {time.monotonic() - started:.1f}s."))
        for tally in tallies:
            self.stdout.write(f"  {tally.what:<14} {tally.created:>7} created, {tally.total:>7} in total")
