"""A PostgreSQL server of the tests' own, an empty database on it for each test, and the storage
fixtures that run a test on SQLite and on PostgreSQL.

The server is started once per test session from the local PostgreSQL binaries (``initdb`` into
a temporary folder in a UTF-8 locale, a free port on 127.0.0.1, its socket in that folder, no
fsync) and stopped at the end; as root it runs as the ``postgres`` system user, since PostgreSQL
refuses to run as root. ``NANKE_TEST_POSTGRES_URL`` (a SQLAlchemy URL of a server where the user may create
databases, e.g. ``postgresql+psycopg://nanke:secret@db/postgres``) uses that server instead.
Without the binaries or the driver, or when the server does not start, the PostgreSQL tests are
skipped with the reason; the SQLite ones still run.

Test modules load these fixtures with ``pytest_plugins = ("tests.fixtures_postgres",)``:

- ``postgresql_url``: an empty PostgreSQL database of its own (what a new deployment starts with);
- ``backend``: runs the test on both backends (ids ``[sqlite]`` and ``[postgresql]``);
  ``@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)`` narrows a test to one (a
  test of what only SQLite has: its pragmas, the FTS5 table, how it stores values);
- ``database_url``: an empty database on ``backend``;
- ``database``: a :class:`~storage.Database` on ``backend``, migrated to head.
"""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from storage import Database

URL_VARIABLE = "NANKE_TEST_POSTGRES_URL"
NOT_INSTALLED = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
NO_DRIVER = "psycopg is not installed (pip install -e '.[postgres]')"
SERVER_USER = "postgres"
"""The system user the server runs as when the tests run as root (Debian's package makes it)."""
SUPERUSER = "nanke"
START_TIMEOUT_S = 30.0
START_TRIES = 3
"""A port found free may be taken before the server binds it: try again on another."""
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'32MB'",
    "timezone": "'Asia/Kathmandu'",
    "log_min_messages": "warning",
}
"""A throw-away server: durability off for speed (a crash only loses test data). Its time zone is
not UTC (and 5:45 off it), so a timestamp that comes back in the server's zone is caught."""

UTF8_LOCALES = ("C.UTF-8", "en_US.UTF-8")
"""The server's locale, as a deployment's usually is: PostgreSQL's text search finds words by its
character classes, and in the C locale every non-ASCII character is a letter (a Chinese prompt's
full-width comma would join the words around it) and only ASCII letters have a case."""

BACKENDS = ("sqlite", "postgresql")
LEFT_OPEN = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@dataclass
class PostgresServer:
    """A PostgreSQL server the tests may create databases on.

    A test's database is recycled for the next one rather than dropped: emptying its ``public``
    schema takes a hundredth of a second, ``CREATE DATABASE`` (a copy of ``template1``) a quarter.
    """

    url: URL
    """Of its maintenance database, as a user allowed to create databases."""
    admin: Engine
    process: subprocess.Popen[bytes] | None = None
    """The server process, when the tests started it (``None``: ``NANKE_TEST_POSTGRES_URL``)."""
    folder: Path | None = None
    created: list[str] = field(default_factory=list)
    free: list[str] = field(default_factory=list)
    """Databases emptied after their test, for the next one."""
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    """Part of every database name: runs sharing a server (``NANKE_TEST_POSTGRES_URL``) never meet."""

    def database_url(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def take(self) -> str:
        """The name of an empty database for one test, until :meth:`give_back`."""
        if self.free:
            return self.free.pop()
        name = f"nanke_test_{self.run}_{len(self.created) + 1}"
        with self.admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        self.created.append(name)
        return name

    def give_back(self, name: str) -> None:
        """Empty ``name`` for the next test: the connections the test left open are ended, and its
        tables, sequences, indexes and extensions go with the ``public`` schema."""
        with self._connected(name) as connection:
            connection.execute(text(LEFT_OPEN))
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        self.free.append(name)

    def end_connections(self, name: str) -> None:
        """End every connection to ``name`` (what a restart of the server does to them)."""
        with self._connected(name) as connection:
            connection.execute(text(LEFT_OPEN))

    @contextmanager
    def _connected(self, name: str) -> Iterator[Connection]:
        engine = create_engine(self.database_url(name), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                yield connection
        finally:
            engine.dispose()

    def stop(self) -> None:
        """Stop the server the tests started, or drop the databases made on the given one."""
        if self.process is None:
            with self.admin.connect() as connection:
                for name in self.created:
                    connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        self.admin.dispose()
        if self.process is not None:
            _stop(self.process)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server: the one of ``NANKE_TEST_POSTGRES_URL``, or one started here."""
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip(NO_DRIVER)
    given = os.environ.get(URL_VARIABLE)
    server = _existing_server(given) if given else _start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgresql_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of an empty database of the test's own (``postgresql+psycopg://...@127.0.0.1:PORT/name``)."""
    name = postgres_server.take()
    yield postgres_server.database_url(name)
    postgres_server.give_back(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: a test that uses it runs once on each."""
    return str(request.param)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """An empty database on ``backend``: a SQLite file, or a PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'nanke.db'}"
    return str(request.getfixturevalue("postgresql_url"))


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A database at the code's schema on ``backend``."""
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


# -- the server -----------------------------------------------------------------------------------


def _existing_server(given: str) -> PostgresServer:
    """The server of ``NANKE_TEST_POSTGRES_URL``: it was asked for, so failing to reach it fails."""
    url = make_url(given)
    if url.get_backend_name() != "postgresql":
        pytest.fail(f"{URL_VARIABLE}: {given!r} is not a PostgreSQL URL")
    url = url.set(drivername="postgresql+psycopg")
    admin = _admin_engine(url)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        admin.dispose()
        shown = url.render_as_string(hide_password=True)
        pytest.fail(f"{URL_VARIABLE}: cannot connect to {shown}: {_first_line(str(error.orig))}")
    return PostgresServer(url=url, admin=admin)


def _start_server() -> PostgresServer:
    """initdb into a temporary folder and start a server there; skips the tests if it cannot."""
    binaries = find_binaries()
    if binaries is None:
        pytest.skip(NOT_INSTALLED)
    account = _server_account()
    folder = Path(tempfile.mkdtemp(prefix="nanke-postgres-"))
    try:
        if account is not None:
            os.chown(folder, account.pw_uid, account.pw_gid)
        data = folder / "data"
        (folder / "socket").mkdir()
        if account is not None:
            os.chown(folder / "socket", account.pw_uid, account.pw_gid)
        _initdb(binaries, data, account=account)
        for _ in range(START_TRIES):
            port = free_port()
            _configure(data, port=port, socket_dir=folder / "socket")
            process, url, why = _launch(binaries, data, port=port, account=account)
            if process is not None:
                return PostgresServer(url=url, admin=_admin_engine(url), process=process, folder=folder)
        pytest.skip(f"PostgreSQL did not start: {why}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _initdb(binaries: Path, data: Path, *, account: pwd.struct_passwd | None) -> None:
    """A new cluster in ``data``, UTF-8 in the first UTF-8 locale this machine has (C otherwise)."""
    command = [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--no-sync"]
    for locale in (*UTF8_LOCALES, None):
        chosen = [f"--locale={locale}"] if locale else ["--no-locale"]
        done = subprocess.run(
            [*command, "--encoding=UTF8", *chosen], capture_output=True, timeout=120, cwd=data.parent,
            **_as(account),
        )  # fmt: skip
        if done.returncode == 0:
            return
        shutil.rmtree(data, ignore_errors=True)
    pytest.skip(f"PostgreSQL's initdb failed: {_last_line(done.stderr or done.stdout)}")


def find_binaries() -> Path | None:
    """The folder of ``initdb`` and ``postgres``: on the PATH, or Debian's
    ``/usr/lib/postgresql/<version>/bin`` (the newest), which is not on the PATH."""
    folders = []
    on_path = shutil.which("initdb")
    if on_path:
        folders.append(Path(on_path).resolve().parent)
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    folders += sorted(debian, key=lambda folder: _version(folder.parent.name), reverse=True)
    for folder in folders:
        if all((folder / name).is_file() for name in ("initdb", "postgres")):
            return folder
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the server as: ``None`` (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pytest.skip(f"PostgreSQL does not run as root and there is no {SERVER_USER!r} user to run it as")


def _as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """``subprocess`` options that run a command as ``account``."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": _groups(account)}


def _groups(account: pwd.struct_passwd) -> list[int]:
    return [group.gr_gid for group in grp.getgrall() if account.pw_name in group.gr_mem]


def _configure(data: Path, *, port: int, socket_dir: Path) -> None:
    """The settings go in ``postgresql.auto.conf`` (read last, so they win; rewritten per try)."""
    settings = {**SERVER_SETTINGS, "port": str(port), "unix_socket_directories": f"'{socket_dir}'"}
    (data / "postgresql.auto.conf").write_text(
        "".join(f"{key} = {value}\n" for key, value in settings.items())
    )


def _launch(
    binaries: Path, data: Path, *, port: int, account: pwd.struct_passwd | None
) -> tuple[subprocess.Popen[bytes] | None, URL, str]:
    """Run ``postgres`` in the foreground of a child process and wait until it takes connections."""
    url = URL.create(
        "postgresql+psycopg", username=SUPERUSER, host="127.0.0.1", port=port, database="postgres"
    )
    log = data.parent / f"server-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(binaries / "postgres"), "-D", str(data)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=data.parent,
            start_new_session=True,  # Ctrl-C in the terminal is for pytest; it stops the server itself
            **_as(account),
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None, url, _last_line(log.read_bytes()) or f"exit status {process.returncode}"
        if _accepts(url):
            return process, url, ""
        time.sleep(0.1)
    _stop(process)
    return None, url, f"it did not accept connections within {START_TIMEOUT_S:.0f} s"


def _accepts(url: URL) -> bool:
    import psycopg

    try:
        psycopg.connect(
            host=url.host, port=url.port, user=url.username, dbname=url.database, connect_timeout=2
        ).close()
    except psycopg.OperationalError:
        return False
    return True


def _admin_engine(url: URL) -> Engine:
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """A fast shutdown (open connections are ended), else a kill."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def _last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""
