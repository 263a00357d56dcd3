"""Tamper with an archived audit trail as an attacker with write access would, with
pyarrow (a Parquet writer nobody here wrote): the trail's files, read in path order,
are rewritten as one file (the first file's name, so the stored order is kept) after
one change.
usage: tamper_audit.py ARCHIVE edit|drop|swap|append|truncate"""
import glob
import hashlib
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    archive, mode = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(archive, "audit", "**", "*.parquet"), recursive=True))
    table = pa.concat_tables([pq.read_table(f, partitioning=None) for f in files])
    rows = table.to_pylist()
    if mode == "edit":
        rows[1]["by"] = "mallory"
    elif mode == "drop":
        del rows[1]
    elif mode == "swap":
        rows[1], rows[2] = rows[2], rows[1]
    elif mode == "truncate":
        rows.pop()
    elif mode == "append":
        # A forged approval chained to the last entry, hashed without the key.
        last = rows[-1]
        forged = dict(last)
        forged.update(seq=last["seq"] + 1, event="approved", by="mallory", prev_hash=last["hash"])
        body = {k: forged[k] for k in ("seq", "at", "event", "decision_id", "by", "payload", "prev_hash")}
        body["at"] = int(forged["at"].timestamp() * 1000)
        forged["hash"] = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()
        rows.append(forged)
    else:
        sys.exit(f"unknown mode {mode}")
    for f in files:
        os.remove(f)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), files[0])
    print(len(rows))


if __name__ == "__main__":
    main()
