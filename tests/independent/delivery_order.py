"""The order of a delivered file's rows as README ("Delivery layout") states it, computed without
the engine: by MurmurHash3's fmix64 of FNV-1a (64 bits) of 0x01 followed by the key column's text
(of 0x00 alone for a null), then by the key column (UTF-8 bytes, nulls first), then by FNV-1a of
the row's values (each value's bytes — text as UTF-8, integers, dates and booleans as their 8-byte
little-endian value, floats as their IEEE bits — or 0xFF for a null, each followed by 0x00)."""
import datetime as dt
import struct

MASK = (1 << 64) - 1
OFFSET = 0xCBF29CE484222325


def _text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return str(v)


def fnv1a(data, h=OFFSET):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def fmix64(h):
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK
    return h ^ (h >> 33)


def sort_key(v):
    return fmix64(fnv1a(b"\x00" if v is None else b"\x01" + _text(v).encode()))


def _value_bytes(v):
    if v is None:
        return b"\xff"
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, bool):
        return struct.pack("<q", int(v))
    if isinstance(v, float):
        return struct.pack("<d", v)
    if isinstance(v, dt.datetime):
        epoch = dt.datetime(1970, 1, 1)
        return struct.pack("<q", (v - epoch) // dt.timedelta(microseconds=1))
    if isinstance(v, dt.date):
        return struct.pack("<q", (v - dt.date(1970, 1, 1)).days)
    return struct.pack("<q", v)


def row_hash(row):
    h = OFFSET
    for v in row:
        h = fnv1a(_value_bytes(v) + b"\x00", h)
    return h


def ordered_rows(rows, key_index):
    """Rows (tuples, in the delivered columns' order) in the delivery's order, the key column at
    `key_index`."""
    def key(r):
        v = r[key_index]
        return (sort_key(v), (0, b"") if v is None else (1, _text(v).encode()), row_hash(r))
    return sorted(rows, key=key)


def ordered_columns(columns, key):
    """A dict of equal-length column lists, reordered as the delivery orders its rows by `key`."""
    names = list(columns)
    rows = list(zip(*[columns[n] for n in names]))
    rows = ordered_rows(rows, names.index(key))
    return {n: [r[i] for r in rows] for i, n in enumerate(names)}


def in_key_order(values):
    """Whether a delivered key column follows the order (its SHA-256 keys never decrease)."""
    keys = [sort_key(v) for v in values]
    return all(a <= b for a, b in zip(keys, keys[1:]))
