"""Alembic migrations for storage/, run by storage.db.migrate()."""
