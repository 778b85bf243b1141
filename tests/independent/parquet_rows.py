"""Prints a Parquet file's rows as JSON lists, read by pyarrow (independently of the engine): dates
as YYYY-MM-DD, datetimes as ISO 8601, other values as JSON has them.

Usage: parquet_rows.py REPO FILE
"""
import datetime
import json
import sys

import pyarrow.parquet as pq


def plain(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


table = pq.read_table(sys.argv[2])
columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
print(json.dumps([[plain(c[row]) for c in columns] for row in range(table.num_rows)]))
