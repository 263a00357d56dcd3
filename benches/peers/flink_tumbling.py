"""Apache Flink (PyFlink, local mini-cluster) side of the windowed-aggregate peer
benchmark: a 10 s tumbling window COUNT and AVG per key over a CSV of
`key,value,ts_ms` events with a 5 s out-of-orderness watermark, into a blackhole sink.

    python3 benches/peers/flink_tumbling.py EVENTS.csv [PARALLELISM]

Prints the wall time of the job (submission to completion) and events per second;
JVM start-up is reported separately.
"""
import sys
import time

t0 = time.time()
from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: E402

path = sys.argv[1]
parallelism = sys.argv[2] if len(sys.argv) > 2 else "2"
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
env.get_config().set("parallelism.default", parallelism)
env.execute_sql(f"""
CREATE TABLE events (
  k STRING, v DOUBLE, ts BIGINT,
  rt AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rt AS rt - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')
""")
env.execute_sql("""
CREATE TABLE sink (k STRING, window_start TIMESTAMP(3), c BIGINT, a DOUBLE)
WITH ('connector' = 'blackhole')
""")
ready = time.time()
result = env.execute_sql("""
INSERT INTO sink
SELECT k, window_start, COUNT(*), AVG(v)
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(rt), INTERVAL '10' SECOND))
GROUP BY k, window_start, window_end
""")
result.wait()
done = time.time()
events = sum(1 for _ in open(path))
print(f"flink: jvm+setup {ready - t0:.1f} s, job {done - ready:.1f} s, {events / (done - ready):,.0f} events/s (parallelism {parallelism})")
