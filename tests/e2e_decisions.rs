//! Decisions end to end against `cara broker`: a metric spike on `api` makes an
//! incident; the policy proposes a low-risk ticket (a `kafka` action, approved by
//! the policy), and a rollback, a restart and a failover (waiting for a human).
//! Verdicts produced with kcat on `cara.approvals` approve the rollback and reject
//! the restart; nobody answers the failover, which expires at a clock tick and
//! escalates to a page. The approved actions are carried out: the ticket as a record
//! on its topic, the rollback and the page as webhooks to an HTTP receiver in this
//! test, which fails the rollback's first attempt (the retry carries the same
//! idempotency key); the rejected and expired ones never reach it. Every step is
//! in table `decisions`, on topic `cara.decisions`, and chained in table `audit`,
//! which `cara audit verify` accepts under the key and refuses after each kind of
//! tampering done with pyarrow (an edited field, a dropped, swapped or forged
//! entry), naming it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const START_MS: i64 = 1_700_000_000_000;
const POINTS: usize = 600;
const SPIKE_AT: usize = 500;
const KEY: &str = "e2e-audit-secret";

/// `api` and `db` latency a minute apart, `api` spiking for six points.
fn metrics() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..POINTS {
        for service in ["api", "db"] {
            let spike = service == "api" && (SPIKE_AT..SPIKE_AT + 6).contains(&i);
            let wobble = ((i * 7919 + service.len() * 31) % 100) as f64 / 100.0;
            let value = 20.0 + wobble + if spike { 50.0 } else { 0.0 };
            let ts = START_MS + i as i64 * 60_000;
            out.push((
                service.to_owned(),
                format!(
                    r#"{{"ts":{ts},"name":"latency_ms","type":"gauge","value":{value},"labels":{{"service":"{service}"}}}}"#
                ),
            ));
        }
    }
    out
}

/// One request the receiver got: path, `Idempotency-Key`, body.
type Received = (String, String, String);

/// An HTTP receiver on a free port: answers 503 to the first request for
/// `/rollback` and 200 to everything else; keeps every request.
fn start_receiver() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
            let (mut key, mut length) = (String::new(), 0usize);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or_default();
                match name.trim().to_ascii_lowercase().as_str() {
                    "idempotency-key" => key = value.trim().to_owned(),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let first_rollback = {
                let mut got = kept.lock().unwrap();
                let first =
                    path == "/rollback" && !got.iter().any(|r: &Received| r.0 == "/rollback");
                got.push((path, key, String::from_utf8_lossy(&body).into_owned()));
                first
            };
            let status = if first_rollback {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let response =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    (port, got)
}

fn decisions(archive: &Path) -> Vec<String> {
    if !archive.join("decisions").is_dir() {
        return Vec::new();
    }
    sql_rows(
        archive,
        "SELECT id, action, state, approved_by, requires_approval, escalation_of FROM decisions ORDER BY at, id, state",
    )
}

fn audit_verify(archive: &Path, key: &str) -> (bool, String) {
    let out = cara()
        .args(["audit", "verify", "--archive"])
        .arg(archive)
        .env("CARA_AUDIT_KEY", key)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn verdicts_from_kafka_decide_actions_run_unanswered_ones_escalate_and_the_audit_trail_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, brokers) = start_cara_broker();
    let (port, received) = start_receiver();
    let config = write_config(
        dir.path(),
        &r#"[archive]
roll_interval = "1s"
[http]
token = "e2e-token-0123456789"
[decisions]
tick_interval = "1s"

[[policy]]
name = "ticket"
when = { cause = ["api"] }
action = "open_ticket"
kind = "kafka"
topic = "ops.tickets"
risk = "low"

[[policy]]
name = "rollback"
when = { cause = ["api"] }
action = "rollback"
kind = "webhook"
url = "http://127.0.0.1:PORT/rollback"
risk = "high"

[[policy]]
name = "restart"
when = { cause = ["api"] }
action = "restart"
kind = "webhook"
url = "http://127.0.0.1:PORT/restart"
risk = "medium"

[[policy]]
name = "scale"
when = { cause = ["api"] }
action = "scale_out"
kind = "webhook"
url = "http://127.0.0.1:PORT/scale"
risk = "medium"

[[policy]]
name = "failover"
when = { cause = ["api"] }
action = "failover"
kind = "webhook"
url = "http://127.0.0.1:PORT/failover"
risk = "high"
approval_timeout = "1m"
escalate_to = "page"

[[policy]]
name = "page"
when = { min_alerts = 1000 }
action = "page_oncall"
kind = "page"
url = "http://127.0.0.1:PORT/page"
risk = "low"
"#
        .replace("PORT", &port.to_string()),
    );
    let archive = dir.path().join("archive");
    let (mut run, http) = start_cara_run_with_env(
        &brokers,
        &archive,
        &config,
        "decide",
        &[("CARA_AUDIT_KEY", KEY)],
    );
    kcat_produce_keyed(&brokers, "telemetry.metrics", &metrics());

    // The incident's decisions: the ticket approved by the policy, three waiting.
    wait_until(Duration::from_secs(90), "five decisions proposed", || {
        decisions(&archive)
            .iter()
            .filter(|r| r.contains(",proposed,"))
            .count()
            >= 5
    });
    let proposed = decisions(&archive);
    let id_of = |action: &str| {
        proposed
            .iter()
            .find(|r| r.contains(&format!(",{action},proposed,")))
            .and_then(|r| r.split(',').next())
            .unwrap_or_else(|| panic!("no {action} decision: {proposed:#?}"))
            .to_owned()
    };
    let (ticket, rollback) = (id_of("open_ticket"), id_of("rollback"));
    let (restart, failover) = (id_of("restart"), id_of("failover"));
    let scale = id_of("scale_out");

    // Over HTTP: without the token, or with a wrong one, 401 and nothing recorded;
    // with it, the verdict goes to cara.approvals like any other.
    let path = format!("/api/decisions/{scale}/approve");
    let body = r#"{"by":"carol","reason":"traffic is up"}"#;
    assert_eq!(http_post_json(http, &path, "", body).0, 401);
    let wrong = "Authorization: Bearer nope\r\n";
    assert_eq!(http_post_json(http, &path, wrong, body).0, 401);
    let good = "Authorization: Bearer e2e-token-0123456789\r\n";
    let (status, text) = http_post_json(http, "/api/decisions/x/maybe", good, body);
    assert_eq!(status, 404, "{text}");
    let (status, text) = http_post_json(http, &path, good, "{}");
    assert!(status == 400 && text.contains("by"), "{status} {text}");
    let (status, text) = http_post_json(http, &path, good, body);
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("cara.approvals"), "{text}");

    // Verdicts with kcat, as an on-call engineer's tool would send them; and one
    // for a decision that does not exist.
    kcat_produce(
        &brokers,
        "cara.approvals",
        &[
            format!(
                r#"{{"decision_id":"{rollback}","verdict":"approve","by":"alice","reason":"bad deploy"}}"#
            ),
            format!(
                r#"{{"decision_id":"{restart}","verdict":"reject","by":"bob","reason":"not a restart"}}"#
            ),
            r#"{"decision_id":"dec-nope","verdict":"approve","by":"mallory"}"#.to_owned(),
        ],
    );
    // Nobody answers the failover: a tick a minute later expires it and the page
    // is proposed and approved by the policy.
    wait_until(
        Duration::from_secs(120),
        "the failover expired and escalated",
        || {
            let rows = decisions(&archive);
            rows.contains(&format!("{failover},failover,expired,,true,"))
                && rows.iter().any(|r| {
                    r.contains(",page_oncall,approved,policy,false,") && r.ends_with(&failover)
                })
        },
    );
    // The approved actions carried out, each reported back as a record.
    wait_until(
        Duration::from_secs(60),
        "ticket, rollback, scale-out and page executed",
        || {
            let rows = decisions(&archive);
            ["open_ticket", "rollback", "scale_out", "page_oncall"]
                .iter()
                .all(|a| rows.iter().any(|r| r.contains(&format!(",{a},executed,"))))
        },
    );
    assert!(run.terminate(Duration::from_secs(30)).success());

    let rows = decisions(&archive);
    assert!(
        rows.contains(&format!("{ticket},open_ticket,approved,policy,false,")),
        "{rows:#?}"
    );
    assert!(
        rows.contains(&format!("{rollback},rollback,approved,alice,true,")),
        "{rows:#?}"
    );
    assert!(
        rows.contains(&format!("{restart},restart,rejected,,true,")),
        "{rows:#?}"
    );
    assert!(
        rows.contains(&format!("{scale},scale_out,approved,carol,true,")),
        "{rows:#?}"
    );
    let scaled = received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == "/scale")
        .count();
    assert_eq!(scaled, 1, "the HTTP-approved action ran once");
    assert!(!rows.iter().any(|r| r.contains(",failed,")), "{rows:#?}");

    // What the receiver got: the rollback refused once (503) and retried, with its
    // decision id as the idempotency key both times; the page with its preset
    // body; nothing for what was rejected or expired.
    let requests = received.lock().unwrap().clone();
    let to = |path: &str| -> Vec<Received> {
        requests.iter().filter(|r| r.0 == path).cloned().collect()
    };
    let rollbacks = to("/rollback");
    assert_eq!(rollbacks.len(), 2, "{requests:#?}");
    assert!(rollbacks.iter().all(|r| r.1 == rollback), "{rollbacks:#?}");
    let body: serde_json::Value = serde_json::from_str(&rollbacks[1].2).unwrap();
    assert_eq!(body["id"].as_str(), Some(rollback.as_str()));
    assert_eq!(body["state"].as_str(), Some("approved"));
    let detail = sql_rows(
        &archive,
        &format!("SELECT detail FROM decisions WHERE id = '{rollback}' AND state = 'executed'"),
    );
    assert!(
        detail[0].contains("HTTP 200") && detail[0].contains("attempt 2"),
        "{detail:?}"
    );
    let pages = to("/page");
    assert_eq!(pages.len(), 1, "{requests:#?}");
    let page: serde_json::Value = serde_json::from_str(&pages[0].2).unwrap();
    assert_eq!(page["dedup_key"].as_str(), Some(pages[0].1.as_str()));
    assert!(
        to("/restart").is_empty() && to("/failover").is_empty(),
        "{requests:#?}"
    );
    // The ticket: a record for the actuator on its topic, keyed by decision id.
    let tickets = kcat_messages(&brokers, "ops.tickets");
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(tickets[0].0, ticket);

    // The topic carries the same changes, keyed by decision id.
    let messages = kcat_messages(&brokers, "cara.decisions");
    for (key, value) in &messages {
        let json: serde_json::Value = serde_json::from_str(value).expect("decision JSON");
        assert_eq!(json["id"].as_str(), Some(key.as_str()), "{value}");
    }
    let states = |id: &str| -> Vec<String> {
        let mut s: Vec<String> = messages
            .iter()
            .filter(|(k, _)| k == id)
            .map(|(_, v)| {
                let json: serde_json::Value = serde_json::from_str(v).unwrap();
                json["state"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        s.dedup();
        s
    };
    assert_eq!(states(&rollback), ["proposed", "approved", "executed"]);
    assert_eq!(states(&restart), ["proposed", "rejected"]);
    assert_eq!(states(&failover), ["proposed", "expired"]);
    // The ignored verdict is in the trail, not in the decisions.
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM audit WHERE event = 'verdict_ignored' AND decision_id = 'dec-nope'"
        ),
        1
    );
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM approvals"),
        4,
        "every verdict archived as given"
    );
    assert_eq!(
        sql_count(
            &archive,
            "SELECT count(*) FROM approvals WHERE record LIKE '%carol%'"
        ),
        1,
        "the HTTP verdict and only it: the refused requests recorded nothing"
    );

    // The trail verifies under the key, and not under another.
    let (ok, text) = audit_verify(&archive, KEY);
    assert!(ok, "{text}");
    assert!(
        text.contains("audit trail verifies") && text.contains("keyed"),
        "{text}"
    );
    let entries = sql_count(&archive, "SELECT count(*) FROM audit");
    assert!(text.contains(&format!("{entries} entries")), "{text}");
    let (ok, text) = audit_verify(&archive, "wrong-key");
    assert!(
        !ok && text.contains("entry 0 (seq 0) was edited or forged"),
        "{text}"
    );

    // The compliance report, from the trail: Markdown, and HTML checked in chromium.
    let report = |args: &[&str]| {
        let out = cara()
            .args(["audit", "report", "--archive"])
            .arg(&archive)
            .args(args)
            .env("CARA_AUDIT_KEY", KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let md = report(&[]);
    assert!(
        md.contains("| rollback | high | 1 | 0 | 1 | 0 | 0 | 1 | 0 | 0 |"),
        "{md}"
    );
    assert!(
        md.contains("| restart | medium | 1 | 0 | 0 | 1 | 0 | 0 | 0 | 0 |"),
        "{md}"
    );
    assert!(
        md.contains("| failover | high | 1 | 0 | 0 | 0 | 1 | 0 | 0 | 0 |"),
        "{md}"
    );
    assert!(
        md.contains("| alice | 1 | 0 |") && md.contains("| bob | 0 | 1 |"),
        "{md}"
    );
    assert!(md.contains("| carol | 1 | 0 |"), "{md}");
    assert!(
        md.contains(&format!("| {failover} | failover |")) && md.contains("page_oncall ("),
        "{md}"
    );
    assert!(
        md.contains("verdicts that found no decision waiting: 1."),
        "{md}"
    );
    assert!(
        md.contains(&format!("Audit trail: {entries} entries, verifies.")),
        "{md}"
    );
    let none = report(&["--from", "2099-01-01T00:00:00Z"]);
    assert!(none.contains("0 decisions proposed"), "{none}");
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let html = kept.join("audit-report.html");
    report(&["--format", "html", "--out", html.to_str().unwrap()]);
    let screenshot = kept.join("audit-report.png");
    let seen = browser_screenshot(&html, &screenshot);
    eprintln!("audit report in chromium: {seen}");
    assert_eq!(seen["title"], "cara audit report");
    let tables: Vec<&str> = seen["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(tables, ["by-policy", "approvers", "expiries", "failures"]);
    let plot = &seen["plots"][0];
    assert_eq!(plot["id"], "outcomes", "{seen}");
    assert!(
        plot["width"].as_i64() >= Some(900) && plot["shapes"].as_i64() >= Some(7),
        "{seen}"
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);

    // Each kind of tampering, on a copy of the trail, is found and named.
    for (mode, expected) in [
        ("edit", "entry 1 (seq 1) was edited or forged".to_owned()),
        (
            "drop",
            "entries with seq 1 to 1 are missing before entry 1 (seq 2)".to_owned(),
        ),
        (
            "swap",
            "entry 1 (seq 2) is out of order: seq 1 was expected there".to_owned(),
        ),
        (
            "append",
            format!("entry {entries} (seq {entries}) was edited or forged"),
        ),
        ("truncate", "entries at the end were dropped".to_owned()),
    ] {
        let copy = dir.path().join(format!("tampered-{mode}"));
        copy_dir(&archive.join("audit"), &copy.join("audit"));
        copy_dir(&archive.join("_cara"), &copy.join("_cara"));
        python("tamper_audit.py", &[copy.to_str().unwrap(), mode]);
        let (ok, text) = audit_verify(&copy, KEY);
        assert!(!ok, "{mode}: {text}");
        assert!(text.contains(&expected), "{mode}: {text}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `api` latency a minute apart over `points` minutes, spiking for six points at
/// each of `spikes`.
fn spiky_metrics(points: usize, spikes: &[usize]) -> Vec<(String, String)> {
    (0..points)
        .map(|i| {
            let spike = spikes.iter().any(|s| (*s..s + 6).contains(&i));
            let wobble = ((i * 7919) % 100) as f64 / 100.0;
            let value = 20.0 + wobble + if spike { 50.0 } else { 0.0 };
            let ts = START_MS + i as i64 * 60_000;
            (
                "api".to_owned(),
                format!(
                    r#"{{"ts":{ts},"name":"latency_ms","type":"gauge","value":{value},"labels":{{"service":"api"}}}}"#
                ),
            )
        })
        .collect()
}

/// A low-risk webhook for every incident, carried out at once; `cara run` killed
/// with -9 after the first one and restarted: every decision reaches the receiver,
/// repeats carry the same idempotency key, the decisions table shows one execution
/// each, and the audit trail still verifies.
#[test]
fn actions_survive_a_kill_9_with_repeats_under_the_same_key_and_one_execution_each() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, brokers) = start_cara_broker();
    let (port, received) = start_receiver();
    let config = write_config(
        dir.path(),
        &r#"[archive]
roll_interval = "1s"
[decisions]
tick_interval = "1s"
[kafka.client_properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[[policy]]
name = "act"
action = "restart_pod"
kind = "webhook"
url = "http://127.0.0.1:PORT/act"
risk = "low"
"#
        .replace("PORT", &port.to_string()),
    );
    let all = spiky_metrics(1800, &[400, 1400]);
    let cut = 900;
    kcat_produce_keyed(&brokers, "telemetry.metrics", &all[..cut]);
    let archive = dir.path().join("archive");
    let env = [("CARA_AUDIT_KEY", KEY)];
    let (mut run, _) = start_cara_run_with_env(&brokers, &archive, &config, "crash", &env);
    wait_until(
        Duration::from_secs(90),
        "the first action carried out",
        || received.lock().unwrap().iter().any(|r| r.0 == "/act"),
    );
    run.kill9();
    kcat_produce_keyed(&brokers, "telemetry.metrics", &all[cut..]);
    let (mut run, _) = start_cara_run_with_env(&brokers, &archive, &config, "crash", &env);
    let executed = |archive: &Path| -> Vec<String> {
        if !archive.join("decisions").is_dir() {
            return Vec::new();
        }
        sql_rows(
            archive,
            "SELECT id FROM decisions WHERE state = 'executed' ORDER BY id",
        )
    };
    wait_until(
        Duration::from_secs(120),
        "both incidents' actions executed",
        || executed(&archive).len() >= 2,
    );
    // Give a repeat time to show, then stop.
    std::thread::sleep(Duration::from_secs(3));
    assert!(run.terminate(Duration::from_secs(30)).success());

    let ids = executed(&archive);
    assert_eq!(ids.len(), 2, "one execution per decision: {ids:?}");
    let proposed = sql_rows(
        &archive,
        "SELECT id FROM decisions WHERE state = 'proposed' ORDER BY id",
    );
    assert_eq!(
        proposed, ids,
        "each decision proposed once and executed once"
    );
    let requests = received.lock().unwrap().clone();
    let keys: std::collections::BTreeSet<&str> = requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        keys.into_iter().map(str::to_owned).collect::<Vec<_>>(),
        ids,
        "every approved decision reached the receiver, under its own key"
    );
    let repeats = requests.len() - ids.len();
    eprintln!(
        "{} requests for {} decisions: {repeats} repeats",
        requests.len(),
        ids.len()
    );
    for r in &requests {
        let body: serde_json::Value = serde_json::from_str(&r.2).unwrap();
        assert_eq!(
            body["id"].as_str(),
            Some(r.1.as_str()),
            "the body is the keyed decision"
        );
    }
    let (ok, text) = audit_verify(&archive, KEY);
    assert!(ok, "{text}");
}
