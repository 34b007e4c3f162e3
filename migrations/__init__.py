"""Alembic migrations of the history schema (``executioner db upgrade``; SQLite migrates itself)."""
