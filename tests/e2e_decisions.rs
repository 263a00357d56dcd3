//! Decisions end to end against `cara broker`: a metric spike on `api` makes an
//! incident; the policy proposes a low-risk ticket (approved by the policy), a
//! rollback and a failover (both high risk, waiting for a human). A verdict
//! produced with kcat on `cara.approvals` approves the rollback; nobody answers the
//! failover, which expires at a clock tick and escalates to a page. Every step is
//! in table `decisions`, on topic `cara.decisions`, and chained in table `audit`,
//! which `cara audit verify` accepts under the key and refuses after each kind of
//! tampering done with pyarrow (an edited field, a dropped, swapped or forged
//! entry), naming it.

mod common;

use std::path::Path;
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
fn verdicts_from_kafka_decide_unanswered_ones_escalate_and_the_audit_trail_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, brokers) = start_cara_broker();
    let config = write_config(
        dir.path(),
        r#"[archive]
roll_interval = "1s"
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
url = "http://127.0.0.1:9/rollback"
risk = "high"

[[policy]]
name = "failover"
when = { cause = ["api"] }
action = "failover"
kind = "webhook"
url = "http://127.0.0.1:9/failover"
risk = "high"
approval_timeout = "1m"
escalate_to = "page"

[[policy]]
name = "page"
when = { min_alerts = 1000 }
action = "page_oncall"
kind = "page"
url = "http://127.0.0.1:9/page"
risk = "low"
"#,
    );
    let archive = dir.path().join("archive");
    let (mut run, _http) = start_cara_run_with_env(
        &brokers,
        &archive,
        &config,
        "decide",
        &[("CARA_AUDIT_KEY", KEY)],
    );
    kcat_produce_keyed(&brokers, "telemetry.metrics", &metrics());

    // The incident's decisions: the ticket approved by the policy, two waiting.
    wait_until(Duration::from_secs(90), "three decisions proposed", || {
        decisions(&archive)
            .iter()
            .filter(|r| r.contains(",proposed,"))
            .count()
            >= 3
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
    let (ticket, rollback, failover) = (id_of("open_ticket"), id_of("rollback"), id_of("failover"));
    wait_until(
        Duration::from_secs(30),
        "the ticket approved by the policy",
        || decisions(&archive).contains(&format!("{ticket},open_ticket,approved,policy,false,")),
    );

    // A verdict with kcat, as an on-call engineer's tool would send it; and one for
    // a decision that does not exist.
    kcat_produce(
        &brokers,
        "cara.approvals",
        &[
            format!(
                r#"{{"decision_id":"{rollback}","verdict":"approve","by":"alice","reason":"bad deploy"}}"#
            ),
            r#"{"decision_id":"dec-nope","verdict":"approve","by":"mallory"}"#.to_owned(),
        ],
    );
    wait_until(
        Duration::from_secs(60),
        "the rollback approved by alice",
        || decisions(&archive).contains(&format!("{rollback},rollback,approved,alice,true,")),
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
    assert!(run.terminate(Duration::from_secs(30)).success());

    let rows = decisions(&archive);
    assert!(
        !rows.iter().any(|r| r.contains(",rollback,rejected,")),
        "{rows:#?}"
    );
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
                serde_json::from_str::<serde_json::Value>(v).unwrap()["state"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        s.dedup();
        s
    };
    assert_eq!(states(&rollback), ["proposed", "approved"]);
    assert_eq!(states(&failover), ["proposed", "expired"]);
    // The ignored verdict is in the trail, not in the decisions.
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM audit WHERE event = 'verdict_ignored' AND decision_id = 'dec-nope'"),
        1
    );
    assert_eq!(
        sql_count(&archive, "SELECT count(*) FROM approvals"),
        2,
        "both verdicts archived as given"
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

    // Each kind of tampering, on a copy of the trail, is found and named.
    for (mode, expected) in [
        ("edit", "entry 1 (seq 1) was edited or forged"),
        (
            "drop",
            "entries with seq 1 to 1 are missing before entry 1 (seq 2)",
        ),
        (
            "swap",
            "entry 1 (seq 2) is out of order: seq 1 was expected there",
        ),
        (
            "append",
            &format!("entry {entries} (seq {entries}) was edited or forged"),
        ),
    ] {
        let copy = dir.path().join(format!("tampered-{mode}"));
        copy_dir(&archive.join("audit"), &copy.join("audit"));
        python("tamper_audit.py", &[copy.to_str().unwrap(), mode]);
        let (ok, text) = audit_verify(&copy, KEY);
        assert!(!ok, "{mode}: {text}");
        assert!(text.contains(expected), "{mode}: {text}");
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
