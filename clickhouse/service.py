"""The ClickHouse service process: owns the store (embedded chDB or a server client), applies
the schema, runs the loader in a thread and serves the dashboard + JSON API until SIGTERM."""

from __future__ import annotations

import logging
import shlex
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from base.config import Settings
from base.errors import UserError
from clickhouse.api import Api
from clickhouse.loader import Loader, LoaderMetrics, LoaderOptions
from clickhouse.metrics import ServiceMetrics
from clickhouse.schema import SchemaOptions
from clickhouse.store import ThreadClients, api_limits, apply_schema, redactor
from clickhouse.web import Access, Server, make_app

log = logging.getLogger(__name__)

# Work that must run in the process owning the ClickHouse store (an embedded chDB directory has one
# owner), registered by a higher layer: name -> factory(argv, settings) -> run(client_factory, stop).
# The front end registers "lake-maintenance" (lakehouse/cli.py); `serve --with "NAME [flags]"` runs it
# in a thread beside the loader. The factory parses its flags at start, so a wrong one fails at once.
Companion = Callable[[Callable[[], object], threading.Event], None]
COMPANIONS: dict[str, Callable[[list[str], Settings], Companion]] = {}


def companion(spec: str, settings: Settings) -> tuple[str, Companion]:
    """``"name --flag value"`` -> (name, its runner); an unknown name or bad flag is a UserError."""
    words = shlex.split(spec)
    if not words or words[0] not in COMPANIONS:
        known = ", ".join(sorted(COMPANIONS)) or "none registered (run through `pipeline`)"
        raise UserError(f"clickhouse serve --with '{spec}': unknown companion (known: {known})")
    return words[0], COMPANIONS[words[0]](words[1:], settings)


@dataclass
class Service:
    """Loader + HTTP server over one set of per-thread clients (one chDB engine per process)."""

    settings: Settings
    schema: SchemaOptions
    loader_options: LoaderOptions | None  # None: API only, no loader
    host: str = "127.0.0.1"
    port: int | None = None
    companions: list[tuple[str, Companion]] = field(default_factory=list)
    manage_schema: bool = True  # False: an administrator applies it (the service then needs no DDL privilege)

    def __post_init__(self) -> None:
        self.clients = ThreadClients(self.settings.clickhouse_dsn)
        # The API's own clients: every query under the API's limits; at most web.THREADS of them at once.
        self.api_clients = ThreadClients(self.settings.clickhouse_dsn,
                                         api_limits(self.settings.dashboard_query_timeout))
        self.stop_event = threading.Event()
        self.metrics = LoaderMetrics()
        self.redact = redactor(self.settings.clickhouse_dsn)
        self._threads: list[threading.Thread] = []
        self.server = None

    def start(self) -> None:
        access = Access.for_settings(self.settings, self.host)  # refused before anything starts
        if self.loader_options is not None and self.manage_schema:
            # Only the loader writes: an API-only service (--no-loader) runs no DDL, so it can use a read-only user.
            apply_schema(self.clients.get(), self.schema)
            loader = Loader(self.settings.kafka_client_config(), self.clients.get, self.loader_options,
                            self.metrics, redact=self.redact)
            self._threads.append(threading.Thread(target=self._run_loader, args=(loader,), name="loader",
                                                  daemon=True))
        for name, run in self.companions:
            self._threads.append(threading.Thread(target=self._run_companion, args=(name, run), name=name,
                                                  daemon=True))
        api = Api(self.api_clients, self.schema.database, self._loader_status, self.settings)
        metrics = ServiceMetrics(self.api_clients, self.schema.database,
                                 self.metrics if self.loader_options is not None else None,
                                 lambda: not self.stop_event.is_set())
        port = self.settings.dashboard_port if self.port is None else self.port
        try:
            self.server = Server(make_app(api, access, self.settings.dashboard_query_timeout, metrics), self.host,
                                 port)
        except OSError as exc:
            raise UserError(f"clickhouse service: cannot listen on {self.host}:{port} ({exc.strerror}); "
                            "stop what uses it or set DASHBOARD_PORT") from None
        self._threads.append(threading.Thread(target=self.server.serve_forever, name="http", daemon=True))
        for t in self._threads:
            t.start()

    @property
    def url(self) -> str:
        host, port = self.server.address
        return f"http://{host}:{port}"

    def _loader_status(self) -> dict:
        if self.loader_options is None:
            return {"running": False}
        return {"running": not self.stop_event.is_set(), "group_id": self.loader_options.group_id,
                **self.metrics.snapshot()}

    def _run_loader(self, loader: Loader) -> None:
        while not self.stop_event.is_set():
            try:
                loader.run(self.stop_event)
            except Exception as exc:  # keep serving the API; restart the loader after a pause
                log.exception("loader stopped with an error; restarting in 5 s")
                self.metrics.set(last_error=self.redact(f"loader: {exc}"))
                self.stop_event.wait(5)

    def _run_companion(self, name: str, run: Companion) -> None:
        try:  # its own client from this thread: one engine, any number of clients in this process
            run(self.clients.get, self.stop_event)
        except Exception:  # the API and the loader go on without it
            log.exception("%s stopped with an error", name)

    def stop(self) -> None:
        self.stop_event.set()
        if self.server is not None:
            self.server.shutdown()
        for t in self._threads:
            t.join(timeout=30)
        self.clients.close()
        self.api_clients.close()

    def serve_forever(self) -> None:
        """Foreground: until SIGTERM/SIGINT."""
        self.start()
        log.info("serving dashboard and API on %s (ClickHouse: %s)", self.url, _describe(self.settings))
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        # Woken every half second: a SIGTERM the kernel hands to another of the process's threads (chDB's, the
        # server's) only sets a flag, which the main thread acts on when it next runs Python; an untimed wait
        # would sleep through it and be SIGKILLed by `clickhouse stop` (seen after a SIGSTOP/SIGCONT).
        while not done.wait(0.5):
            pass
        log.info("stopping")
        self.stop()


def _describe(settings: Settings) -> str:
    return "server (CLICKHOUSE_URL)" if settings.clickhouse_url else settings.clickhouse_dsn
