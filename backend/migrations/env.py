"""Alembic environment: migrations run against the URL the studio passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text
from sqlmodel import SQLModel

import backend.arena.models  # noqa: F401 - arena campaigns, pairs, tickets and judgments (migration 0005)
import backend.evaluation  # noqa: F401 - automatic metrics of generated images (migration 0004)
import backend.jobs.models  # noqa: F401 - the job system's tables (migration 0002)
import backend.models  # noqa: F401 - registers the tables on SQLModel.metadata
import backend.scores  # noqa: F401 - caption scores (migration 0003)
import backend.shards  # noqa: F401 - images registered by reference (migration 0009)
from backend.db import lock_key

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            connection.commit()  # end the implicit transaction so alembic's own commits
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # two processes starting at once (the studio and a runner) migrate one after the
                # other: the second finds the schema at head and does nothing
                key = lock_key("recap-studio", "migrate")
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            context.run_migrations()
        connection.commit()
    engine.dispose()


run_migrations()
