"""Columns, value conversion and bad-row screening, shared by the file readers.

A file reader turns each block it reads into arrays of the used columns plus the rows
whose values did not convert; :func:`_settle_block` then sorts the rows into good and
bad ones and yields the good ones, raising on or reporting the bad ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ._types import _KIND_TEXT, FLOAT32_MAX, _arrow, _fail, _Options, _show

if TYPE_CHECKING:
    import pyarrow as pa

_FLOAT64_MAX = float(np.finfo(np.float64).max)

_ARROW_TYPES = {"float": "float64", "int": "int64", "bool": "bool_", "string": "string"}


def _arrow_type(kind: str) -> pa.DataType:
    return getattr(_arrow()[0], _ARROW_TYPES[kind])()


@dataclass
class _Layout:
    """The columns of a stream, fixed by its first file."""

    source: str
    names: list[str]
    # The label columns: none, one, or several (``target`` given as a list), in which
    # case a missing label is no fault and ``y`` has a column per target.
    targets: list[str]
    several: bool
    features: list[str]
    # used column -> "float", "int", "bool" or "string"
    kinds: dict[str, str] = field(default_factory=dict)
    # Feature columns that the first chunk says are text, read with as_frame=False:
    # their first unreadable value stops the stream whatever on_bad_rows says, since
    # skipping would drop nearly every row.
    not_numeric: set[str] = field(default_factory=set)

    @property
    def used(self) -> list[str]:
        """Features and target, in the order of the file."""
        wanted = set(self.features) | set(self.targets)
        return [name for name in self.names if name in wanted]


def _select_columns(
    source: str, names: list[str], opts: _Options, line: int | None, unit: str
) -> _Layout:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _fail(source, line, name, "the header names this column twice", unit)
        seen.add(name)
    targets = opts.targets
    for name in targets:
        if name not in seen:
            what = "a target" if len(targets) > 1 else "the target"
            raise _fail(source, line, name, f"no such column ({what})", unit)
    if opts.features is None:
        features = [name for name in names if name not in targets]
    else:
        features = list(opts.features)
        for name in features:
            if name not in seen:
                raise _fail(source, line, name, "no such column (a selected feature)", unit)
    several = isinstance(opts.target, list)
    return _Layout(source, list(names), targets, several, features)


def _check_same_columns(source: str, names: list[str], layout: _Layout, unit: str) -> None:
    """A later file must have exactly the columns of the first, in the same places."""
    line = 1 if unit == "line" else None
    first = os.path.basename(layout.source)
    where = {name: i for i, name in enumerate(names)}
    if len(where) != len(names):
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise _fail(source, line, name, "the header names this column twice", unit)
    for old, name in enumerate(layout.names):
        new = where.get(name)
        if new is None:
            raise _fail(
                source,
                line,
                name,
                f"column missing (it is field {old + 1} in {first})",
                unit,
            )
        if new != old:
            raise _fail(
                source,
                line,
                name,
                f"column moved from field {old + 1} (in {first}) to field {new + 1}",
                unit,
            )
    if len(names) > len(layout.names):
        extra = len(layout.names)
        reason = f"unexpected column at field {extra + 1} (not in {first})"
        raise _fail(source, line, names[extra], reason, unit)


# ------------------------------------------------------------- value conversion


def _cast_locating(arr: pa.Array, to: pa.DataType) -> tuple[pa.Array, np.ndarray | None]:
    """Cast ``arr``; values that do not cast become null and are flagged.

    The failing values are found by bisection with the same cast, so what counts as
    readable is exactly what pyarrow's cast accepts.
    """
    pa, pc, _ = _arrow()
    try:
        return pc.cast(arr, to), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    bad = np.zeros(len(arr), dtype=bool)
    pending = [(0, len(arr))]
    while pending:
        lo, hi = pending.pop()
        if hi - lo <= 16:
            for i in range(lo, hi):
                try:
                    pc.cast(arr.slice(i, 1), to)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    bad[i] = True
            continue
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            try:
                pc.cast(arr.slice(a, b - a), to)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pending.append((a, b))
    cleaned = pc.if_else(pa.array(bad), pa.scalar(None, type=arr.type), arr)
    return pc.cast(cleaned, to), bad


def _casts(arr: pa.Array, to: pa.DataType) -> bool:
    """Whether every value of ``arr`` casts to ``to``."""
    pa, pc, _ = _arrow()
    try:
        pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _or(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _parse_text(raw: pa.Array, kind: str) -> tuple[pa.Array, np.ndarray | None]:
    """Convert a column read as bytes to ``kind``, as pyarrow's typed CSV reader does.

    Numbers are trimmed of spaces first and booleans are not: that is what the typed
    reader does, and the two paths must agree.
    """
    pa, pc, pcsv = _arrow()
    text, bad = _cast_locating(raw, pa.string())
    if kind == "string":
        return text, bad
    if kind == "bool":
        options = pcsv.ConvertOptions()
        true = pc.is_in(text, value_set=pa.array(options.true_values))
        false = pc.is_in(text, value_set=pa.array(options.false_values))
        values = pc.if_else(true, True, pc.if_else(false, False, pa.scalar(None, pa.bool_())))
        unknown = pc.and_(text.is_valid(), pc.invert(pc.or_(true, false)))
        if unknown.true_count:
            bad = _or(bad, unknown.to_numpy(zero_copy_only=False))
        return values, bad
    to = pa.float64() if kind == "float" else pa.int64()
    values, bad_value = _cast_locating(pc.utf8_trim_whitespace(text), to)
    return values, _or(bad, bad_value)


def _missing(arr: pa.Array) -> np.ndarray | None:
    """Rows where ``arr`` (not a float column) has no value; None if there are none."""
    if arr.null_count:
        return arr.is_null().to_numpy(zero_copy_only=False)
    return None


def _odd_floats(arr: pa.Array, bound: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Rows of a float column that are missing (null or NaN), and rows holding infinity
    or a magnitude beyond ``bound``; None for none. One pass when all is well."""
    values = arr.to_numpy(zero_copy_only=False)
    # Two reductions, no temporary array, on the common clean block; a NaN makes both
    # NaN, which fails the comparison.
    if not len(values) or (-bound <= values.min() and values.max() <= bound):
        return None, None
    with np.errstate(invalid="ignore"):
        odd = ~(np.abs(values) <= bound)
    nan = np.isnan(values)
    out = odd & ~nan
    return (nan if nan.any() else None), (out if out.any() else None)


def _range_reason(value: float, bound: float, target: bool) -> str:
    if np.isinf(value):
        return f"{'target value' if target else 'value'} {value} is not finite"
    if bound == FLOAT32_MAX:
        limit = f"float32's range (largest magnitude {bound:.4g}; max_abs sets the bound)"
    else:
        limit = f"max_abs={bound:.6g}"
    return f"{value:.6g} is beyond {limit}"


def _not_utf8_byte(value: object) -> int | None:
    """The first byte of a raw field that is not UTF-8, if there is one."""
    if not isinstance(value, bytes):
        return None
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return value[exc.start]
    return None


def _label_matrix(columns: list[np.ndarray]) -> np.ndarray:
    """The labels of several targets as one ``(n_rows, n_targets)`` array.

    float64, NaN for a missing label, when every column is float; otherwise object,
    each label a Python value of its column's type (int, float, bool, str) and None for
    a missing one, so that no label changes type (an int column in float64 would read
    back as floats). A float column marks a missing label with NaN, any other column
    with None.
    """
    if all(column.dtype.kind == "f" for column in columns):
        return np.column_stack(columns).astype(np.float64, copy=False)
    Y = np.empty((len(columns[0]), len(columns)), dtype=object)
    for j, column in enumerate(columns):
        labels = column.tolist()
        if column.dtype.kind == "f":
            labels = [None if label != label else label for label in labels]
        Y[:, j] = labels
    return Y


# ------------------------------------------------------------------ screening

# A bad row found in a block: (line, column or None, reason, stops the stream whatever
# on_bad_rows says).
_Item = tuple[int | None, str | None, str, bool]


class _Block(NamedTuple):
    """One block of a file, converted to the kinds of its columns."""

    # used column -> its values (null where a value did not convert)
    arrays: dict[str, pa.Array]
    # used column -> the rows whose value did not convert
    failures: dict[str, np.ndarray]
    # used column -> the values as read, for messages (None on the typed CSV path)
    raw: dict[str, pa.Array] | None
    # the line (for Parquet, the row number) of every row
    lines: np.ndarray
    # rows that are blank lines
    blank: np.ndarray | None = None


def _screen(block: _Block, layout: _Layout, opts: _Options) -> tuple[np.ndarray, list[_Item]]:
    """Sort the rows of a block into good ones and bad ones.

    A row is charged to its first faulty column in file order: a value that does not
    convert, a missing target, a missing feature when NaN is not allowed, or a float
    that is infinite or (for a feature) beyond ``max_abs``. Of several targets, a
    missing one is a missing label, no fault; a row with none of them is bad, charged
    to no column.
    """
    arrays, failures, raw, lines, blank = block
    n = len(lines)
    culprit = np.full(n, -1, dtype=np.intp)
    unreadable = np.zeros(n, dtype=bool)
    wild = np.zeros(n, dtype=bool)
    unlabelled = np.full(n, layout.several)
    if blank is not None:
        culprit[blank] = -2
    used = layout.used
    for j, name in enumerate(used):
        target = name in layout.targets
        fail = failures.get(name)
        if fail is not None:
            hit = fail & (culprit == -1)
            culprit[hit] = j
            unreadable |= hit
        out = None
        if layout.kinds[name] == "float":
            # Labels are not bounded, only finite; a bound of inf still refuses inf.
            bound = np.inf if target else opts.max_abs
            miss, out = _odd_floats(arrays[name], min(bound, _FLOAT64_MAX))
        else:
            miss = _missing(arrays[name])
        if target and layout.several:
            # A missing label of one task is no fault; a row with none is (below).
            unlabelled &= False if miss is None else miss
        elif miss is not None and (target or not opts.allow_nan):
            culprit[miss & (culprit == -1)] = j
        if out is not None:
            hit = out & (culprit == -1)
            culprit[hit] = j
            wild |= hit
    items: list[_Item] = []
    if layout.several:
        names = ", ".join(map(repr, layout.targets))
        reason = f"no target value: every target column ({names}) is missing"
        for i in np.flatnonzero(unlabelled & (culprit == -1)):
            items.append((int(lines[i]), None, reason, False))
        culprit[unlabelled & (culprit == -1)] = -3  # bad, but no column's fault
    for i in np.flatnonzero(culprit >= 0):
        name = used[culprit[i]]
        if wild[i]:
            value = float(arrays[name][i].as_py())
            reason = _range_reason(value, opts.max_abs, name in layout.targets)
            items.append((int(lines[i]), name, reason, False))
        elif unreadable[i]:
            value = raw[name][i].as_py() if raw is not None else None
            fatal = name in layout.not_numeric
            reason = f"cannot read {_show(value)} as {_KIND_TEXT[layout.kinds[name]]}"
            byte = _not_utf8_byte(value)
            if byte is not None:
                reason += f": byte 0x{byte:02x} is not UTF-8 (save the file as UTF-8)"
            elif fatal:
                reason += (
                    " (the column holds text: read it with as_frame=True, or leave it out"
                    " of features)"
                )
            items.append((int(lines[i]), name, reason, fatal))
        elif name in layout.targets:
            items.append((int(lines[i]), name, "missing target value", False))
        else:
            items.append(
                (int(lines[i]), name, "missing value (allow_nan=True lets NaN through)", False)
            )
    return culprit == -1, items


def _settle(
    source: str,
    batch: pa.RecordBatch | None,
    lines: np.ndarray,
    good: np.ndarray,
    items: list[_Item],
    opts: _Options,
    unit: str,
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Yield the good rows of a block; raise on, or report, its bad rows.

    When the block holds a row that stops the stream, the good rows before it are
    yielded first, so that every full chunk before the bad row reaches the caller.
    """
    pa = _arrow()[0]
    stop = None
    if items:
        items.sort(key=lambda item: (item[0] is None, item[0] or 0))
        if opts.on_bad_rows == "raise":
            stop = 0
        else:
            stop = next((k for k, item in enumerate(items) if item[3]), None)
        for line, column, reason, _ in items[: len(items) if stop is None else stop]:
            opts.report.add(source, line, column, reason)
    if stop is not None:
        line, column, reason, _ = items[stop]
        if batch is not None and line is not None:
            keep = good & (lines < line)
            if keep.any():
                yield batch.filter(pa.array(keep)), lines[keep]
        raise _fail(source, line, column, reason, unit)
    if batch is None or not good.any():
        return
    if good.all():
        yield batch, lines
    else:
        yield batch.filter(pa.array(good)), lines[good]


def _settle_block(
    source: str,
    block: _Block,
    layout: _Layout,
    opts: _Options,
    *,
    unit: str,
    extra: list[_Item] | None = None,
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Screen one converted block (plus bad rows the parser found) and settle it."""
    pa = _arrow()[0]
    good, items = _screen(block, layout, opts)
    if extra:
        items += extra
    used = layout.used
    batch = pa.RecordBatch.from_arrays([block.arrays[n] for n in used], names=used)
    yield from _settle(source, batch, block.lines, good, items, opts, unit)
