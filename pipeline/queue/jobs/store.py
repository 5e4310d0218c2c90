"""The database and the image store behind the job interface: the one place a session opens.

Every unit of work of the job interface runs in :meth:`JobStore.session`, which commits or
rolls back and turns the storage package's errors into the pipeline's own
(:class:`~pipeline.errors.JobNotFound`, :class:`~pipeline.errors.JobBusy`,
:class:`~pipeline.errors.StoreError`), so nothing above the job interface handles a storage
type.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session

from pipeline.domain.text import one_line
from pipeline.errors import JobBusy, JobNotFound, StoreError
from storage import Database, ImageStore, StaleDispatch, StorageError, StoredFile, head_revision
from storage import InvalidTransition as StorageInvalidTransition
from storage import JobNotFound as StorageJobNotFound

log = logging.getLogger(__name__)


class JobStore:
    """One database (SQLite by default, PostgreSQL the same) and its content-addressed image files."""

    def __init__(self, database: Database, files: ImageStore) -> None:
        self._database = database
        self._files = files

    @classmethod
    def open(cls, *, database_url: str, image_dir: Path) -> JobStore:
        """Connect to ``database_url`` and the image folder; the schema is left as it is.

        Raises :class:`~pipeline.errors.StoreError` when the URL names a database whose Python
        driver is not installed, saying which to install.
        """
        try:
            database = Database(database_url)
        except (ImportError, NoSuchModuleError) as error:
            raise StoreError(_driver_missing(make_url(database_url), error)) from None
        return cls(database, ImageStore(image_dir))

    # -- units of work --------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises (a remote
        worker's stale result, :class:`storage.StaleDispatch`, is the runs' to handle)."""
        try:
            with self._database.session() as session:
                yield session
        except StaleDispatch:
            raise
        except StorageJobNotFound as error:
            raise JobNotFound(error.job_id) from None
        except StorageInvalidTransition as error:
            raise JobBusy(str(error)) from error
        except StorageError as error:
            raise StoreError(str(error)) from error

    # -- files ----------------------------------------------------------------------------------

    def put(self, data: bytes, *, suffix: str) -> StoredFile:
        return self._files.put(data, suffix=suffix)

    def read(self, path: str) -> bytes:
        return self._files.read(path)

    def path(self, path: str) -> Path:
        return self._files.path(path)

    def delete(self, path: str) -> bool:
        return self._files.delete(path)

    # -- the schema -----------------------------------------------------------------------------

    def upgrade(self) -> str | None:
        """Migrate the schema to the newest revision (the app does this at start); returns it."""
        try:
            return self._database.upgrade()
        except StorageError as error:
            raise StoreError(str(error)) from error
        except OperationalError as error:
            raise StoreError(self._unreachable(error)) from None

    def revision(self) -> str | None:
        """The schema's revision, ``None`` for an empty database."""
        try:
            return self._database.current_revision()
        except StorageError as error:
            raise StoreError(str(error)) from error
        except OperationalError as error:
            raise StoreError(self._unreachable(error)) from None

    def _unreachable(self, error: OperationalError) -> str:
        """One line for a database server that cannot be reached (the driver's words, no password)."""
        said = one_line(str(error.orig or error))
        return f"{self.label!r} cannot be reached: {said}"

    @staticmethod
    def head_revision() -> str | None:
        """The newest revision this code knows (what :meth:`upgrade` goes to)."""
        return head_revision()

    @property
    def label(self) -> str:
        """The database URL without its password, for messages."""
        return make_url(self._database.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        """Close the pooled connections."""
        self._database.dispose()


POSTGRES_HINT = "pip install -e '.[postgres]' (psycopg)"


def _driver_missing(url: URL, error: BaseException) -> str:
    shown = url.render_as_string(hide_password=True)
    if isinstance(error, NoSuchModuleError):
        return f"{shown!r} names a database nanke does not know (use sqlite:///… or postgresql+psycopg://…)"
    if url.get_backend_name() == "postgresql":
        how = (
            POSTGRES_HINT
            if url.drivername == "postgresql+psycopg"
            else f"write postgresql+psycopg://… and {POSTGRES_HINT}"
        )
    else:
        how = "install its Python driver"
    return f"{shown!r} needs a database driver that is not installed: {how}"
