"""Tables that keep what a reader came for at any width: columns are dropped by priority and named
under the table, and no kept cell is ever cut or wrapped (bench's, compare's and the CLI's tables)."""

from __future__ import annotations

from collections.abc import Sequence

PAD = 3  # a column's rule and padding
EDGE = 1  # the table's last rule


def narrow_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    priority: Sequence[str],
    width: int | None,
    left: Sequence[str] = (),
    keep: Sequence[str] = (),
):
    """(rich Table, the columns left out): `columns` kept in `priority` order (those not named come
    last) while they fit in `width` characters (all of them when None), but for columns with nothing
    in them ("-" or ""); the first in `priority` and those in `keep` (what names a row) always stay,
    folded rather than cut where even they are too wide. Cells are text, never rich markup."""
    from rich.markup import escape
    from rich.table import Table

    always = [c for c in columns if c == priority[0] or c in keep]
    empty = {c for i, c in enumerate(columns) if rows and all(str(r[i]) in ("", "-") for r in rows)}
    need = {c: max([len(c), *(len(str(r[i])) for r in rows)]) + PAD for i, c in enumerate(columns)}
    order = sorted(
        (c for c in columns if c not in empty and c not in always),
        key=lambda c: priority.index(c) if c in priority else len(priority),
    )
    kept, used = set(always), EDGE + sum(need[c] for c in always)
    for c in order:
        if width is not None and used + need[c] > width:
            break  # a narrow column further down never displaces a wider, more needed one
        kept.add(c)
        used += need[c]
    table = Table(title=title)
    for c in columns:
        if c in kept:
            table.add_column(
                escape(c),
                justify="left" if c in left else "right",
                no_wrap=c not in always,
                min_width=need[c] - PAD if width is None or used <= width else None,
                overflow="fold",
            )
    for r in rows:
        table.add_row(*(escape(str(v)) for c, v in zip(columns, r, strict=True) if c in kept))
    return table, [c for c in columns if c not in kept and c not in empty]


def constants(columns: Sequence[str], rows: Sequence[Sequence[str]], candidates: Sequence[str]) -> dict:
    """{column: value} of the `candidates` with one value on every row (of two or more): said once in a
    heading line rather than repeated down the table."""
    if len(rows) < 2:
        return {}
    return {
        c: rows[0][i]
        for i, c in enumerate(columns)
        if c in candidates and all(r[i] == rows[0][i] for r in rows)
    }


def without(columns: Sequence[str], rows: Sequence[Sequence[str]], drop) -> tuple[list, list]:
    """`columns` and `rows` less the columns in `drop`."""
    keep = [i for i, c in enumerate(columns) if c not in drop]
    return [columns[i] for i in keep], [[r[i] for i in keep] for r in rows]


def heading(const: dict) -> str:
    """'model resnet18, batch 1': the constant columns of a table, for its title."""
    return ", ".join(f"{c} {v}" for c, v in const.items())


def left_out(hidden: Sequence[str], where: str) -> str | None:
    """The line under a narrowed table naming what it left out, and where to see it all."""
    return f"not shown at this width: {', '.join(hidden)} ({where})" if hidden else None
