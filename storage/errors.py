"""The errors ``storage`` raises. Every one is a :class:`StorageError`."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

UPGRADE_HINT = "run `python main.py db upgrade`"


class StorageError(Exception):
    """Base class of the storage errors."""


class ApiKeyExists(StorageError):
    """An API key of that name exists already (revoked ones too: names are never reused)."""


class JobNotFound(StorageError):
    """No job has this id (it never existed or was deleted)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Job {job_id} no longer exists.")
        self.job_id = job_id


class StaleDispatch(StorageError):
    """A remote worker's result for a job that is no longer running in that dispatch: the batch
    was given to another worker meanwhile (or the job was cancelled), so this result is discarded."""

    def __init__(self, job_id: int, dispatch_id: str) -> None:
        super().__init__(f"Job {job_id} no longer runs in dispatch {dispatch_id}.")
        self.job_id = job_id
        self.dispatch_id = dispatch_id


class DeliveryNotFound(StorageError):
    """The job has no delivery row."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Job {job_id} has no delivery.")
        self.job_id = job_id


class InvalidTransition(StorageError):
    """A job was asked to move between two statuses that are not connected."""

    def __init__(self, job_id: int, from_status: str, to_status: str) -> None:
        super().__init__(f"Job {job_id} cannot go from {from_status} to {to_status}.")
        self.job_id = job_id
        self.from_status = from_status
        self.to_status = to_status


class DatabaseNotMigrated(StorageError):
    """The database schema is not the one this code was written for."""

    def __init__(self, current: str | None, head: str | None, *, known: bool = True) -> None:
        at = f"at revision {current}" if current else "empty (no revision)"
        if known:
            message = f"The database is {at}, older than this code ({head}): {UPGRADE_HINT}."
        else:
            message = (
                f"The database is {at}, which this code does not know (its newest is {head}): "
                f"it was written by a newer nanke; update the code, then {UPGRADE_HINT}."
            )
        super().__init__(message)
        self.current = current
        self.head = head
