"""OTLP made by the OpenTelemetry Python SDK (not ours), as the Collector's Kafka exporter
writes it, produced with confluent-kafka; then the archive checked field by field with DuckDB.

usage: otlp_sdk.py produce BROKERS EXPECTED.json
         Records spans, metrics of every kind (counter, up-down counter, gauge, histogram,
         exponential histogram, delta sums; a summary built with opentelemetry-proto) and
         logs with the SDK, serialises each export request as otlp_proto and as otlp_json
         (ids as hex, enums as integers, as OTLP's JSON mapping says), produces both to
         otlp_spans / otlp_metrics / otlp_logs, and writes the rows cara must archive.
       otlp_sdk.py check ARCHIVE EXPECTED.json
         Reads the archive with DuckDB and compares every expected row; prints a JSON
         summary, exits 1 on the first difference.
"""
import base64
import json
import logging
import os
import sys
import time

PROTO_PARTITION = 0
JSON_PARTITION = 1


def hex_ids(node):
    """OTLP JSON writes trace and span ids as hex; protobuf's JSON mapping as base64."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids(item)
    return node


def otlp_json(message):
    from google.protobuf.json_format import MessageToDict
    as_dict = MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(hex_ids(as_dict)).encode("utf-8")


def record_spans(now_ns):
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    provider = TracerProvider(resource=Resource.create(
        {"service.name": "checkout", "host.name": "node-1", "deployment.environment": "test"}))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.http", "1.2.0")
    for i in range(20):
        start = now_ns - 60_000_000_000 + i * 1_000_000_000
        parent = tracer.start_span("POST /pay", kind=SpanKind.SERVER, start_time=start,
                                   attributes={"http.route": "/pay", "attempt": i})
        child = tracer.start_span("SELECT orders", kind=SpanKind.CLIENT, start_time=start + 1_000_000,
                                  context=trace.set_span_in_context(parent))
        if i % 5 == 0:
            child.set_status(Status(StatusCode.ERROR, "deadlock"))
            child.add_event("retry", timestamp=start + 2_000_000, attributes={"n": 1})
        child.end(end_time=start + 3_500_000 + i)
        parent.end(end_time=start + 10_000_000 + i * 1000)
    return provider, exporter.get_finished_spans()


def span_rows(spans):
    kinds = {0: "internal", 1: "server", 2: "client", 3: "producer", 4: "consumer"}
    rows = []
    for s in spans:
        parent = s.parent.span_id if s.parent is not None else None
        rows.append({
            "trace_id": format(s.context.trace_id, "032x"),
            "span_id": format(s.context.span_id, "016x"),
            "parent_span_id": format(parent, "016x") if parent else None,
            "service": s.resource.attributes["service.name"],
            "name": s.name,
            "kind": kinds[s.kind.value],
            "start_ms": s.start_time // 1_000_000,
            "end_ms": s.end_time // 1_000_000,
            "duration_ms": (s.end_time - s.start_time) / 1e6,
            "status": "error" if s.status.status_code.name == "ERROR" else "ok",
            "events": len(s.events),
            "status_description": s.status.description,
        })
    return rows


def record_metrics(now_ns):
    """Two collections of a cumulative reader and of a delta reader."""
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    cumulative = InMemoryMetricReader()
    delta = InMemoryMetricReader(preferred_temporality={
        Counter: AggregationTemporality.DELTA, UpDownCounter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(
        resource=Resource.create({"service.name": "checkout", "host.name": "node-1"}),
        metric_readers=[cumulative, delta],
        views=[View(instrument_name="queue.wait", aggregation=ExponentialBucketHistogramAggregation())])
    meter = provider.get_meter("shop.metrics", "1.0")
    requests = meter.create_counter("requests", unit="1")
    inflight = meter.create_up_down_counter("inflight")
    latency = meter.create_histogram("latency", unit="ms")
    wait = meter.create_histogram("queue.wait", unit="ms")
    temperature = meter.create_gauge("temperature", unit="Cel")
    batches = []
    for round_ in range(2):
        requests.add(5 + round_, {"route": "/pay"})
        requests.add(2, {"route": "/cart"})
        inflight.add(3)
        inflight.add(-1 - round_)
        for v in [3, 7, 12, 40, 80, 200, 900][round_:]:
            latency.record(v, {"route": "/pay"})
            wait.record(v / 10)
        temperature.set(21.5 + round_, {"room": "a"})
        batches.append(("cumulative", cumulative.get_metrics_data()))
        batches.append(("delta", delta.get_metrics_data()))
    return batches


def summary_request(now_ns):
    """Summaries come from Prometheus and other bridges, not the SDK: built with the proto package."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="legacy")))
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "rpc.duration"
    point = metric.summary.data_points.add()
    point.time_unix_nano = now_ns - 5_000_000_000
    point.count = 12
    point.sum = 30.5
    for q, v in [(0.5, 2.0), (0.99, 7.5)]:
        point.quantile_values.add(quantile=q, value=v)
    return request


def record_logs(now_ns, tracer_provider):
    from opentelemetry import trace
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs import export as log_export
    from opentelemetry.sdk.resources import Resource

    exporter_type = getattr(log_export, "InMemoryLogRecordExporter", None) or log_export.InMemoryLogExporter
    exporter = exporter_type()
    provider = LoggerProvider(resource=Resource.create({"service.name": "payments", "host.name": "node-2"}))
    provider.add_log_record_processor(log_export.SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("shop.payments")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
    tracer = tracer_provider.get_tracer("shop.http")
    logger.debug("cache warm")
    logger.info("payment %s accepted", "p-1")
    logger.warning("slow upstream")
    with tracer.start_as_current_span("charge"):
        logger.error("payment %s failed: card declined", "p-2")
    logger.critical("ledger unreachable")
    provider.force_flush()
    return exporter.get_finished_logs()


def log_rows(logs):
    def level(number):
        for top, name in [(4, "trace"), (8, "debug"), (12, "info"), (16, "warn"), (20, "error"), (24, "fatal")]:
            if number <= top:
                return name
        return "info"
    rows = []
    for data in logs:
        r = getattr(data, "log_record", data)
        resource = getattr(data, "resource", None) or r.resource
        ts = r.timestamp or r.observed_timestamp
        rows.append({
            "ts_ms": ts // 1_000_000,
            "service": resource.attributes["service.name"],
            "level": level(r.severity_number.value),
            "message": r.body,
            "trace_id": format(r.trace_id, "032x") if r.trace_id else None,
            "host": resource.attributes["host.name"],
            "severity_text": r.severity_text,
            "severity_number": r.severity_number.value,
        })
    return rows


def produce(brokers, expected_path):
    from confluent_kafka import Producer
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    now_ns = time.time_ns()
    tracer_provider, spans = record_spans(now_ns)
    metric_batches = record_metrics(now_ns)
    logs = record_logs(now_ns, tracer_provider)

    messages = []  # (topic, request)
    messages.append(("otlp_spans", encode_spans(spans)))
    for _, data in metric_batches:
        messages.append(("otlp_metrics", encode_metrics(data)))
    messages.append(("otlp_metrics", summary_request(now_ns)))
    messages.append(("otlp_logs", encode_logs(logs)))

    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})
    failures = []
    for topic, request in messages:
        # Protobuf to one partition, the same request in OTLP JSON to another.
        for partition, payload in [(PROTO_PARTITION, request.SerializeToString()),
                                   (JSON_PARTITION, otlp_json(request))]:
            producer.produce(topic, value=payload, partition=partition,
                             on_delivery=lambda err, _m: err and failures.append(str(err)))
    producer.flush(60)
    if failures:
        sys.exit(f"undelivered: {failures}")

    # Expected metric rows: the encoded requests read back through the proto package,
    # so the expectation is what the SDK sent, not what cara made of it.
    metric_points = {}
    metric_rows = 0
    for _, request in [m for m in messages if m[0] == "otlp_metrics"]:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    points = getattr(metric, kind).data_points
                    metric_points.setdefault(metric.name, {"kind": kind, "points": 0})
                    metric_points[metric.name]["points"] += len(points)
                    for p in points:
                        # The rows README's mapping gives each point (every point here
                        # has values in its interval, so its percentiles are written).
                        metric_rows += {
                            "gauge": lambda: 1, "sum": lambda: 1,
                            "histogram": lambda: 2 + len(p.bucket_counts) + 3,
                            "exponential_histogram": lambda: 2 + 3,
                            "summary": lambda: 2 + len(p.quantile_values),
                        }[kind]()
    expected = {
        "spans": span_rows(spans),
        "logs": log_rows(logs),
        "metrics": metric_points,
        "messages": {t: 2 * sum(1 for m in messages if m[0] == t) for t in ("otlp_spans", "otlp_metrics", "otlp_logs")},
    }
    with open(expected_path, "w", encoding="utf-8") as f:
        json.dump(expected, f)
    print(json.dumps({"messages": len(messages) * 2, "spans": 2 * len(spans), "logs": 2 * len(logs),
                      "metric_rows": 2 * metric_rows}))


def fail(what, got, want):
    print(json.dumps({"mismatch": what, "got": got, "want": want}, default=str))
    sys.exit(1)


def check(archive, expected_path):
    import duckdb

    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    con = duckdb.connect()

    def table(name):
        glob = os.path.join(archive, name, "**", "*.parquet")
        return f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"

    # Spans: every SDK span twice (protobuf and JSON partitions), every field as mapped.
    got = con.execute(
        f"SELECT _partition, trace_id, span_id, parent_span_id, service, name, kind, "
        f"epoch_ms(start), epoch_ms(\"end\"), duration_ms, status, attributes "
        f"FROM {table('spans')} WHERE _topic = 'otlp_spans'").fetchall()
    by_key = {}
    for row in got:
        by_key.setdefault((row[0], row[2]), row)
    for partition in (PROTO_PARTITION, JSON_PARTITION):
        for want in expected["spans"]:
            row = by_key.get((partition, want["span_id"]))
            if row is None:
                fail(f"span {want['span_id']} on partition {partition}", None, want)
            attributes = json.loads(row[11])
            fields = [("trace_id", row[1]), ("parent_span_id", row[3]), ("service", row[4]),
                      ("name", row[5]), ("kind", row[6]), ("start_ms", row[7]), ("end_ms", row[8]),
                      ("status", row[10])]
            for key, value in fields:
                if value != want[key]:
                    fail(f"span {want['span_id']} {key}", value, want[key])
            if abs(row[9] - want["duration_ms"]) > 1e-6:
                fail(f"span {want['span_id']} duration_ms", row[9], want["duration_ms"])
            if len(attributes.get("otel.events", [])) != want["events"]:
                fail(f"span {want['span_id']} events", attributes.get("otel.events"), want["events"])
            if want["status_description"] and attributes.get("otel.status_description") != want["status_description"]:
                fail(f"span {want['span_id']} status message", attributes, want["status_description"])
            if attributes.get("deployment.environment") != "test" or attributes.get("otel.scope.name") != "shop.http":
                fail(f"span {want['span_id']} resource and scope", attributes, "deployment.environment, otel.scope.name")
    if len(got) != 2 * len(expected["spans"]):
        fail("span rows", len(got), 2 * len(expected["spans"]))

    # Logs.
    got = con.execute(
        f"SELECT _partition, epoch_ms(ts), service, level, message, trace_id, host, level_text, severity_number "
        f"FROM {table('logs')} WHERE _topic = 'otlp_logs' ORDER BY _partition, _offset, _index").fetchall()
    want_logs = expected["logs"]
    if len(got) != 2 * len(want_logs):
        fail("log rows", len(got), 2 * len(want_logs))
    for i, row in enumerate(got):
        want = want_logs[i % len(want_logs)]
        values = {"ts_ms": row[1], "service": row[2], "level": row[3], "message": row[4],
                  "trace_id": row[5], "host": row[6]}
        for key, value in values.items():
            if value != want[key]:
                fail(f"log {i} {key}", value, want[key])
        if row[7] != want["severity_text"] or row[8] != want["severity_number"]:
            fail(f"log {i} level_text, severity_number", row[7:9], (want["severity_text"], want["severity_number"]))

    # Metrics: the rows each OTLP kind maps to, from both partitions alike.
    names = dict(con.execute(
        f"SELECT name, count(*) FROM {table('metrics')} WHERE _topic = 'otlp_metrics' GROUP BY name").fetchall())
    per_partition = con.execute(
        f"SELECT _partition, count(*) FROM {table('metrics')} WHERE _topic = 'otlp_metrics' "
        f"GROUP BY _partition ORDER BY 1").fetchall()
    if len(per_partition) != 2 or per_partition[0][1] != per_partition[1][1]:
        fail("metric rows per encoding", per_partition, "the same count from protobuf and JSON")
    for name, info in expected["metrics"].items():
        points = 2 * info["points"]
        if info["kind"] in ("gauge", "sum"):
            rows = names.get(name, 0)
            if rows != points:
                fail(f"metric {name} rows", rows, points)
        elif info["kind"] in ("histogram", "exponential_histogram"):
            for suffix in ("_count", "_sum", "_p50", "_p90", "_p99"):
                if names.get(name + suffix, 0) != points:
                    fail(f"metric {name}{suffix} rows", names.get(name + suffix), points)
            if info["kind"] == "histogram" and names.get(name + "_bucket", 0) <= points:
                fail(f"metric {name}_bucket rows", names.get(name + "_bucket"), f"more than {points}")
        elif info["kind"] == "summary":
            if names.get(name + "_count") != points or names.get(name) != 2 * points:
                fail(f"summary {name}", names, points)
    # Delta sums are made cumulative: the delta reader's `requests` on /pay reads 5, then 11.
    totals = con.execute(
        f"SELECT list(value ORDER BY _offset) FROM {table('metrics')} "
        f"WHERE _topic = 'otlp_metrics' AND name = 'requests' AND labels['route'] = '/pay' "
        f"AND _partition = {PROTO_PARTITION} GROUP BY ALL").fetchone()[0]
    if totals != [5.0, 5.0, 11.0, 11.0]:
        fail("requests on /pay (cumulative, delta made cumulative)", totals, [5.0, 5.0, 11.0, 11.0])
    service = con.execute(
        f"SELECT DISTINCT service, labels['service'], labels['host.name'] FROM {table('metrics')} "
        f"WHERE _topic = 'otlp_metrics' AND name = 'temperature'").fetchall()
    if service != [("checkout", "checkout", "node-1")]:
        fail("metric service and resource labels", service, [("checkout", "checkout", "node-1")])
    dlq = con.execute(f"SELECT count(*) FROM {table('dlq')}").fetchone()[0] if os.path.isdir(
        os.path.join(archive, "dlq")) else 0
    if dlq:
        fail("dead letters", dlq, 0)
    print(json.dumps({"spans": 2 * len(expected["spans"]), "logs": 2 * len(want_logs),
                      "metric_names": len(names), "metric_rows": sum(names.values())}))


def main():
    command = sys.argv[1]
    if command == "produce":
        produce(sys.argv[2], sys.argv[3])
    elif command == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
