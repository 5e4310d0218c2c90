"""The Alembic migrations of the database schema (see ``storage.migrate`` to run them)."""
