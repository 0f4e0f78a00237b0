"""Copy a workspace's database to another engine: SQLite into PostgreSQL when a team outgrows one
file, and back (a PostgreSQL workspace taken home, or a backup in one file).

Why a row copy and not a dump: the two engines share no dump format, and the schema on each side
is already made by the same Alembic migrations, so copying table by table (parents before
children, each in primary-key order) through SQLAlchemy moves every value with its type
(datetimes, JSON, booleans) and keeps every id, so the workspace's files and every reference
between rows still match.

What it guarantees: the target must be empty (at the newest migration, no rows), the whole copy is
one transaction on the target, and the row count of every table is compared before that
transaction commits — a mismatch, or any error, leaves the target as empty as it was. The source
is only read. The workspace folder (images, runs, exports) is not touched: both databases belong
to the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, MetaData, Table, func, select, text

from backend.db import WRITERS_LOCK, engines, migrate, redact
from backend.progress import ProgressFn
from backend.workspace import Workspace

BATCH_ROWS = 2000
SKIPPED_TABLES = {"alembic_version"}  # each side's own, written by its migrations


class CopyError(RuntimeError):
    """The copy cannot be made (a target that holds data, counts that differ); nothing written."""


@dataclass
class CopyReport:
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied (= rows in both)

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "target": self.target, "rows": self.rows, "total": self.total}


def _tables(conn: Connection) -> list[Table]:
    """The schema's tables as the database has them, parents before children."""
    meta = MetaData()
    meta.reflect(bind=conn)
    return [t for t in meta.sorted_tables if t.name not in SKIPPED_TABLES]


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _reset_sequences(conn: Connection, table: Table) -> None:
    """PostgreSQL hands out ids from a sequence that an insert with explicit ids does not move:
    set it past the largest id copied, or the next new row would collide."""
    for column in table.primary_key.columns:
        sequence = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
        ).scalar()
        if sequence is None:
            continue
        largest = conn.execute(select(func.max(column))).scalar()
        if largest is None:
            conn.execute(text("SELECT setval(:s, 1, false)"), {"s": sequence})
        else:
            conn.execute(text("SELECT setval(:s, :v, true)"), {"s": sequence, "v": int(largest)})


def _copy_rows(
    src: Connection, dst: Connection, target_name: str, progress: ProgressFn | None
) -> dict[str, int]:
    """Copy every table inside one target transaction; the per-table counts once they match."""
    source_tables = {t.name: t for t in _tables(src)}
    target_tables = _tables(dst)
    dst.rollback()  # reflection opened a transaction; the copy's own starts below
    missing = sorted(set(source_tables) ^ {t.name for t in target_tables})
    if missing:
        raise CopyError(
            "the two databases' schemas differ in tables "
            f"{', '.join(missing)}: upgrade both to the same version of RECAP Studio"
        )
    expected = {name: _count(src, t) for name, t in source_tables.items()}
    total, done = sum(expected.values()), 0
    postgres = dst.dialect.name == "postgresql"
    with dst.begin():
        if postgres:  # no studio writes into the target while it is being filled
            dst.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITERS_LOCK})
        held = {t.name: n for t in target_tables if (n := _count(dst, t))}
        if held:
            listed = ", ".join(f"{name} ({n} rows)" for name, n in sorted(held.items()))
            raise CopyError(
                f"the target database {target_name} already holds data: {listed}; "
                "copy into a new, empty database"
            )
        for table in target_tables:
            origin = source_tables[table.name]
            columns = [c.name for c in table.columns if c.name in origin.columns]
            order = list(origin.primary_key.columns) or [origin.columns[columns[0]]]
            rows = src.execute(select(*(origin.columns[c] for c in columns)).order_by(*order))
            while batch := rows.fetchmany(BATCH_ROWS):
                dst.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in batch])
                done += len(batch)
                if progress is not None:
                    progress(done, total, f"copying {table.name}")
            if postgres:
                _reset_sequences(dst, table)
        got = {t.name: _count(dst, t) for t in target_tables}
        differ = {n: (expected[n], got[n]) for n in expected if expected[n] != got[n]}
        if differ:  # raising rolls the whole copy back
            listed = ", ".join(f"{n}: {a} in the source, {b} copied" for n, (a, b) in differ.items())
            raise CopyError(f"row counts differ after the copy ({listed}); nothing was kept")
        return got


def copy_database(
    source: Workspace,
    target: Workspace,
    *,
    progress: ProgressFn | None = None,
) -> CopyReport:
    """Copy every row of ``source``'s database into ``target``'s (empty) database.

    Both are brought to the newest migration first. ``progress(done_rows, total_rows, message)``
    is called as batches land.
    """
    if source.db_url == target.db_url:
        raise CopyError(f"source and target are the same database ({redact(source.db_url)})")
    migrate(source)
    migrate(target)
    report = CopyReport(redact(source.db_url), redact(target.db_url))
    read_engine, write_engine = engines(source.db_url)[0], engines(target.db_url)[1]
    # one read transaction on the source: the counts and the rows come from the same snapshot
    # (SQLite's read transactions are snapshots; PostgreSQL's need REPEATABLE READ for it)
    with read_engine.connect() as src, write_engine.connect() as dst:
        if src.dialect.name == "postgresql":
            src.execution_options(isolation_level="REPEATABLE READ")
        with src.begin():
            report.rows = _copy_rows(src, dst, report.target, progress)
    return report
