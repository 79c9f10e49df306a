"""INSERT model instances without the ORM's per-statement query compilation.

`QuerySet.create()`/`bulk_create()` rebuild the INSERT's SQL for every call (~0.3 ms of Python
for a wide row on the machines we target). Here the statement text is built once per model,
vendor and row count, and every value still goes through the field's own `pre_save` and
`get_db_prep_save`, so defaults, `auto_now_add` and JSON encoding behave exactly as with the
ORM. Used on the two hot paths: the webhook's signal row and the execution's order legs.
"""

from __future__ import annotations

from functools import cache

from django.db import connection, transaction


@cache
def _insert_sql(model, vendor: str, rows: int):
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [f for f in meta.concrete_fields if f is not meta.pk]
    values = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
        f" VALUES {', '.join([values] * rows)} RETURNING {quote(meta.pk.column)}"
    )
    return sql, fields


@cache
def _insert_if_sql(model, rows: int, condition: str):
    """PostgreSQL: INSERT ... SELECT FROM (VALUES ...) WHERE `condition`. Each value is cast to
    its column's type (values in a VALUES list are typed on their own, and a NULL or a
    string would otherwise become text); character columns are cast to text so that an
    over-long value still fails on the column as with a plain INSERT, never truncated."""
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [f for f in meta.concrete_fields if f is not meta.pk]

    def cast(field) -> str:
        if field.get_internal_type() in ("CharField", "TextField", "SlugField", "EmailField", "URLField"):
            return "text"
        kind = field.rel_db_type(connection) if field.is_relation else field.cast_db_type(connection)
        return kind.split("(")[0] if kind.startswith("numeric") else kind

    values = "(" + ", ".join(f"CAST(%s AS {cast(f)})" for f in fields) + ")"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
        f" SELECT * FROM (VALUES {', '.join([values] * rows)}) AS v WHERE {condition}"
        f" RETURNING {quote(meta.pk.column)}"
    )
    return sql, fields


def insert_returning_pk(objs: list, *, only_if: tuple[str, list] | None = None) -> list:
    """INSERT `objs` (instances of one model, auto primary key) in one statement and set their
    primary keys. Constraint violations raise `django.db.IntegrityError`, as with the ORM.

    `only_if` = (SQL condition, its parameters): insert all rows only when the condition
    holds at that moment, in the same statement (PostgreSQL); returns [] when it does not."""
    if only_if is not None and connection.vendor != "postgresql":
        raise NotImplementedError("a conditional insert is built for PostgreSQL only")
    if not connection.features.can_return_rows_from_bulk_insert:  # SQLite older than 3.35
        with transaction.atomic():
            for obj in objs:
                obj.save(force_insert=True)
        return objs
    model = type(objs[0])
    if only_if is None:
        sql, fields = _insert_sql(model, connection.vendor, len(objs))
    else:
        sql, fields = _insert_if_sql(model, len(objs), only_if[0])
    params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in objs for field in fields]
    if only_if is not None:
        params += only_if[1]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [row[0] for row in cursor.fetchall()]
    if not ids and only_if is not None:
        return []
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding, obj._state.db = False, connection.alias
    return objs
