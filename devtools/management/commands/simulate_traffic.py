import argparse
import shutil
import signal
from contextlib import contextmanager
from json import dumps
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from clinical.reference import STATE_CHOICES
from devtools import simulate, simulate_config, simulate_push, simulate_session

SERVER_WAIT_SECONDS = 30.0


def minutes_span(text: str) -> tuple[float, float]:
    """Parse ``8-20`` (or ``5``) into a (low, high) span of minutes."""
    low, _, high = text.partition("-")
    try:
        span = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes as LOW-HIGH, e.g. 8-20, got {text!r}") from None
    if not 0 <= span[0] <= span[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= LOW <= HIGH, got {text!r}")
    return span


def part_of(text: str) -> tuple[int, int]:
    """Parse ``2/5`` into (2, 5): part 2 (counting from 0) of 5."""
    k, _, n = text.partition("/")
    try:
        part = (int(k), int(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 0/4, got {text!r}") from None
    if not 0 <= part[0] < part[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= K < N, got {text!r}")
    return part


def state_codes(text: str) -> tuple[str, ...]:
    """Parse ``TX,nv`` into state codes, refusing any that is not a US state or territory."""
    codes = tuple(code.strip().upper() for code in text.split(",") if code.strip())
    unknown = [code for code in codes if code not in dict(STATE_CHOICES)]
    if not codes or unknown:
        raise argparse.ArgumentTypeError(f"expected state codes such as TX,NV, got {', '.join(unknown) or text!r}")
    return codes


def api_line(at: float, waited: float | None, status: int) -> str:
    """Return one API request as ``--api-times`` writes it: ``<start> <ms or -> <status>``."""
    return f"{at:.3f} {'-' if waited is None else f'{waited:.2f}'} {status}\n"


class Command(BaseCommand):
    help = (
        "Drive realistic patient and provider traffic through the JSON API (a running server and router "
        "make the offers) with a live one-line summary, until Ctrl-C or --duration."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the console serves /api/v1/")
        parser.add_argument("--rate", type=float, help="new visit requests per second (default 0.5; gentle 0.25)")
        parser.add_argument(
            "--providers", type=int, help="how many providers the simulation plays (default 40; gentle 60)"
        )
        parser.add_argument(
            "--patients", type=int, help="how many patients the simulation plays, one open visit each (default 500)"
        )
        parser.add_argument(
            "--part", type=part_of, metavar="K/N",
            help="play only part K of N of the patients and providers (by id), to run N simulations side by side",
        )  # fmt: skip
        parser.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
        parser.add_argument("--seed", type=int, help="seed for every random choice")
        parser.add_argument(
            "--cancel-rate",
            type=float,
            help="share of patients who give up if still waiting after 5-90 s (default 0.05)",
        )
        parser.add_argument("--speed", type=float, help="divides every delay: 2 runs twice as fast (default 1)")
        parser.add_argument(
            "--visit-minutes", type=minutes_span, metavar="LOW-HIGH", help="visit length (default 8-20; gentle 1-3)"
        )
        parser.add_argument(
            "--all-states", action="store_true", default=None,
            help="locate patients anywhere, also where no played provider is licensed (their visits expire)",
        )  # fmt: skip
        parser.add_argument(
            "--states", type=state_codes, metavar="TX,NV",
            help="locate patients only in these states (e.g. to leave one unserved: --states GU --providers 0)",
        )  # fmt: skip
        parser.add_argument("--gentle", action="store_true", help="the `make run` preset: low rate, short visits")
        parser.add_argument(
            "--no-push", dest="push", action="store_false", default=None,
            help="only poll, as apps without websockets do (default: listen on /ws/v1/, poll while it is down)",
        )  # fmt: skip
        parser.add_argument("--json", action="store_true", help="end with one JSON line of the counts (for soaks)")
        parser.add_argument(
            "--api-times", type=Path, metavar="FILE",
            help="write every API request there at the end, one a line: its start (Unix seconds), its time as the "
            "app waited (ms, or - when nothing answered) and the HTTP status (0: no answer); for bench_load",
        )  # fmt: skip
        parser.add_argument(
            "--sign-in-seconds", type=float, metavar="S",
            help="providers sign in (socket, then availability) spread over S seconds, whatever --speed "
            "(default: over the first 5 s, divided by --speed)",
        )  # fmt: skip

    def handle(self, *args, duration=None, gentle=False, json=False, api_times=None, **options):
        names = (
            "base_url", "rate", "providers", "patients", "part", "seed", "cancel_rate", "speed", "visit_minutes",
            "all_states", "states", "push", "sign_in_seconds",
        )  # fmt: skip
        try:
            config = simulate_config.config_for(gentle=gentle, **{name: options[name] for name in names})
        except ValueError as error:  # "cancel_rate: 1.5 is not valid."
            name, _, problem = str(error).partition(":")
            raise CommandError(f"--{name.replace('_', '-')}:{problem}") from None
        with simulate_session.session_for(config) as session:
            if not session.mrns:
                raise CommandError("There are no patients to simulate; run `manage.py seed_demo` first.")
            sim = simulate.Simulation(config, session, on_summary=self._show, summary_every=self._every())
            self._introduce(config, session)
            with _stop_on_signals(sim):
                answered = sim.wait_for_server(min(SERVER_WAIT_SECONDS, duration or SERVER_WAIT_SECONDS))
                if not answered and not sim.stopping:
                    self.stdout.write(f"{config.base_url} does not answer yet; carrying on, counting errors")
                stats = sim.run(duration=duration)
        if self.stdout.isatty():
            self.stdout.write("")
        for line in stats.report():
            self.stdout.write(line)
        self.stdout.write(f"revoked {session.revoked} simulation API clients")
        if api_times:
            api_times.write_text("".join(api_line(*call) for call in stats.api_log))
        if json:
            self.stdout.write(dumps({"simulation": session.run_id, **stats.counts()}))

    def _introduce(self, config, session) -> None:
        count = len(session.states)
        where = f"the {count} state{'s' * (count != 1)} they practise in" if count else "every state"
        self.stdout.write(
            f"simulation {session.run_id}: {len(session.provider_tokens)} providers, {config.rate} requests/s "
            f"from patients in {where}, against {config.base_url} (Ctrl-C stops)"
        )
        if config.push:
            url = simulate_push.socket_url(config.base_url)
            self.stdout.write(f"the apps listen on {url} and poll only while their socket is down or silent")
        else:
            self.stdout.write("the apps only poll (--no-push)")
        served = simulate_config.capacity(config)
        if config.rate > served:
            self.stdout.write(f"note: these providers finish about {served:.2f} visits/s, so the queue will grow")

    def _every(self) -> float:
        return 1.0 if self.stdout.isatty() else 5.0

    def _show(self, stats) -> None:
        """Refresh the summary in place on a terminal; print it as a plain line otherwise."""
        if not self.stdout.isatty():
            self.stdout.write(stats.line())
            return
        width = shutil.get_terminal_size().columns - 1
        self.stdout.write(f"\r{stats.line()[:width]}\x1b[K", ending="")
        self.stdout.flush()


@contextmanager
def _stop_on_signals(sim):
    """Let SIGINT and SIGTERM stop the simulation cleanly; a second one interrupts at once."""

    def stop(signum, frame):
        if sim.stopping:
            raise KeyboardInterrupt
        sim.stopping = True

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
