"""Score an archive's alerts against a labels file with DuckDB (a reader nobody here
wrote), by the rule `cara backtest replay --labels` documents: a firing alert matches
an incident when it starts in [start, end + grace) and its `service` label names the
incident's service (an alert without one matches by time alone) and detects it; an
alert in that time on a service the incident's `affected` list names (a caller it
shows on) is a true symptom, not a detection.
usage: score_labels_duckdb.py LABELS.jsonl ARCHIVE GRACE_MS -> one line
`incidents,detected,true_alerts,false_alerts,symptom_alerts`."""
import os
import sys

import duckdb


def main():
    labels, archive, grace = sys.argv[1], sys.argv[2], int(sys.argv[3])
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE incidents AS SELECT id, service, start AS start_ms, \"end\" AS end_ms, "
        f"coalesce(affected, []) AS affected "
        f"FROM read_json('{labels}', format = 'newline_delimited', "
        f"columns = {{id: 'VARCHAR', kind: 'VARCHAR', service: 'VARCHAR', start: 'BIGINT', \"end\": 'BIGINT', "
        f"affected: 'VARCHAR[]'}})"
    )
    glob = os.path.join(archive, "alerts", "**", "*.parquet")
    con.execute(
        f"CREATE TABLE fired AS SELECT row_number() OVER () AS n, "
        f"map_extract(labels, 'service')[1] AS service, epoch_ms(starts_at) AS starts_ms "
        f"FROM read_parquet('{glob}', hive_partitioning = true) WHERE status = 'firing'"
    )
    con.execute(
        f"CREATE TABLE matches AS SELECT f.n, i.id FROM fired f JOIN incidents i "
        f"ON (f.service IS NULL OR f.service = i.service) "
        f"AND f.starts_ms >= i.start_ms AND f.starts_ms < i.end_ms + {grace}"
    )
    con.execute(
        f"CREATE TABLE symptoms AS SELECT f.n FROM fired f JOIN incidents i "
        f"ON list_contains(i.affected, f.service) "
        f"AND f.starts_ms >= i.start_ms AND f.starts_ms < i.end_ms + {grace} "
        f"WHERE f.n NOT IN (SELECT n FROM matches)"
    )
    incidents = con.execute("SELECT count(*) FROM incidents").fetchone()[0]
    detected = con.execute("SELECT count(DISTINCT id) FROM matches").fetchone()[0]
    symptoms = con.execute("SELECT count(DISTINCT n) FROM symptoms").fetchone()[0]
    true_alerts = con.execute("SELECT count(DISTINCT n) FROM matches").fetchone()[0] + symptoms
    alerts = con.execute("SELECT count(*) FROM fired").fetchone()[0]
    print(f"{incidents},{detected},{true_alerts},{alerts - true_alerts},{symptoms}")


main()
