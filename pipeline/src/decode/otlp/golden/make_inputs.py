"""Writes the golden inputs of `decode::otlp` (run once; the files are kept):
one request per signal, built with the official `opentelemetry-proto` package (not ours),
serialised as protobuf (`SIGNAL.pb`) and in OTLP's JSON mapping (`SIGNAL.json`: ids as
hex, enums as integers). Times are 2027-01-15T08:00:00Z and after.

usage: python3 make_inputs.py   (in this folder)
"""
import base64
import json

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

T = 1_800_000_000_000 * 1_000_000


def kv(key, **value):
    return KeyValue(key=key, value=AnyValue(**value))


def resource(target, service):
    target.attributes.extend([kv("service.name", string_value=service), kv("host.name", string_value="node-3"),
                              kv("cloud.region", string_value="eu-west-1")])


def metrics():
    m = ExportMetricsServiceRequest()
    rm = m.resource_metrics.add()
    resource(rm.resource, "cart")
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = "cart.metrics", "2.1"
    g = sm.metrics.add(); g.name = "queue.depth"; g.unit = "{items}"
    p = g.gauge.data_points.add(); p.time_unix_nano = T; p.as_int = 12
    p.attributes.append(kv("queue", string_value="orders"))
    c = sm.metrics.add(); c.name = "http.requests"; c.sum.is_monotonic = True; c.sum.aggregation_temporality = 2
    p = c.sum.data_points.add(); p.time_unix_nano = T; p.as_double = 1042
    p.attributes.extend([kv("code", int_value=200), kv("tls", bool_value=True)])
    d = sm.metrics.add(); d.name = "bytes.sent"; d.sum.is_monotonic = True; d.sum.aggregation_temporality = 1
    for i, v in enumerate([100, 250]):
        p = d.sum.data_points.add(); p.time_unix_nano = T + i * 10_000_000_000; p.as_int = v
    u = sm.metrics.add(); u.name = "connections"; u.sum.aggregation_temporality = 2
    p = u.sum.data_points.add(); p.time_unix_nano = T; p.as_int = 7
    h = sm.metrics.add(); h.name = "http.duration"; h.unit = "ms"; h.histogram.aggregation_temporality = 2
    p = h.histogram.data_points.add(); p.time_unix_nano = T; p.count = 10; p.sum = 412.5
    p.explicit_bounds.extend([10, 50, 100]); p.bucket_counts.extend([2, 5, 2, 1])
    e = sm.metrics.add(); e.name = "db.latency"; e.exponential_histogram.aggregation_temporality = 1
    p = e.exponential_histogram.data_points.add(); p.time_unix_nano = T; p.count = 6; p.sum = 30; p.scale = 2
    p.zero_count = 1; p.positive.offset = 8; p.positive.bucket_counts.extend([2, 3])
    s = sm.metrics.add(); s.name = "rpc.duration"
    p = s.summary.data_points.add(); p.time_unix_nano = T; p.count = 4; p.sum = 9.5
    p.quantile_values.add(quantile=0.5, value=2.0); p.quantile_values.add(quantile=0.99, value=4.5)
    return m


def logs():
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    resource(rl.resource, "payments")
    sl = rl.scope_logs.add()
    sl.scope.name = "payments.log"
    r = sl.log_records.add(); r.time_unix_nano = T; r.severity_number = 17; r.severity_text = "ERROR"
    r.body.string_value = "charge 4411 failed: card declined"; r.trace_id = bytes(range(16)); r.span_id = bytes(range(8))
    r.attributes.append(kv("user", string_value="u-9"))
    r = sl.log_records.add(); r.observed_time_unix_nano = T + 1_000_000; r.severity_text = "notice"
    r.body.kvlist_value.values.append(kv("event", string_value="refund"))
    r = sl.log_records.add(); r.time_unix_nano = T + 2_000_000; r.severity_text = "chatty"
    r.body.int_value = 42
    return request


def spans():
    t = ExportTraceServiceRequest()
    rs = t.resource_spans.add()
    resource(rs.resource, "checkout")
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "checkout.http", "0.9"
    s = ss.spans.add(); s.trace_id = bytes(range(16)); s.span_id = bytes([1] * 8); s.name = "POST /pay"
    s.kind = 2; s.start_time_unix_nano = T; s.end_time_unix_nano = T + 12_500_000
    s.attributes.append(kv("http.route", string_value="/pay"))
    c = ss.spans.add(); c.trace_id = bytes(range(16)); c.span_id = bytes([2] * 8); c.parent_span_id = bytes([1] * 8)
    c.name = "SELECT orders"; c.kind = 3; c.start_time_unix_nano = T + 1_000_000; c.end_time_unix_nano = T + 9_000_001
    c.status.code = 2; c.status.message = "deadlock"; c.trace_state = "vendor=1"
    ev = c.events.add(); ev.name = "retry"; ev.time_unix_nano = T + 2_000_000
    ev.attributes.append(kv("attempt", int_value=2))
    ln = c.links.add(); ln.trace_id = bytes([0xAA] * 16); ln.span_id = bytes([0xBB] * 8)
    c.dropped_attributes_count = 3
    return t


def otlp_json(message):
    as_dict = MessageToDict(message, use_integers_for_enums=True)

    def hex_ids(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId"):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hex_ids(value)
        elif isinstance(node, list):
            for item in node:
                hex_ids(item)
    hex_ids(as_dict)
    return json.dumps(as_dict, indent=1)


for name, request in [("metrics", metrics()), ("logs", logs()), ("spans", spans())]:
    with open(f"{name}.pb", "wb") as f:
        f.write(request.SerializeToString())
    with open(f"{name}.json", "w") as f:
        f.write(otlp_json(request) + "\n")
