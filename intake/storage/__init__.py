"""Durable storage: SQLAlchemy tables, Alembic migrations, the repository."""
