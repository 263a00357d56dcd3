//! Template-mining throughput and the peer benchmark against drain3 (PyPI), side by
//! side on the same lines in one run: every Loghub 2k system's `Content`, in file
//! order, each system mined by a fresh miner.
//!
//! `cargo bench -p cara-operators --bench log_peer` (needs `python3 -m pip install
//! drain3` for the peer; without it only cara's figures are printed).
//! `CARA_LOGHUB=DIR` points at another copy of the dataset; `CARA_LOG_PEER_PARTS=1`
//! also times masking alone.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cara_operators::logs::{MinerConfig, TemplateMiner};

const SYSTEMS: [&str; 16] = [
    "HDFS",
    "Hadoop",
    "Spark",
    "Zookeeper",
    "BGL",
    "HPC",
    "Thunderbird",
    "Windows",
    "Linux",
    "Android",
    "HealthApp",
    "Apache",
    "Proxifier",
    "OpenSSH",
    "OpenStack",
    "Mac",
];

fn load(dir: &std::path::Path) -> Vec<(&'static str, Vec<String>)> {
    SYSTEMS
        .iter()
        .map(|system| {
            let path = dir
                .join(system)
                .join(format!("{system}_2k.log_structured_corrected.csv"));
            let mut reader = csv::Reader::from_path(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; set CARA_LOGHUB", path.display()));
            let content = reader
                .headers()
                .expect("header")
                .iter()
                .position(|h| h == "Content")
                .expect("Content column");
            let lines = reader
                .records()
                .map(|r| {
                    r.expect("record")
                        .get(content)
                        .unwrap_or_default()
                        .replace(['\n', '\t'], " ")
                })
                .collect();
            (*system, lines)
        })
        .collect()
}

/// Mines every system with a fresh miner; returns the time taken.
fn mine_all(corpus: &[(&'static str, Vec<String>)]) -> Duration {
    let started = Instant::now();
    for (system, lines) in corpus {
        let mut miner = TemplateMiner::new(MinerConfig::default());
        for (i, line) in lines.iter().enumerate() {
            std::hint::black_box(miner.parse(system, line, i as i64));
        }
    }
    started.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::var_os("CARA_LOGHUB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/loghub2k")
        });
    let corpus = load(&dir);
    let lines: usize = corpus.iter().map(|(_, l)| l.len()).sum();
    let bytes: usize = corpus.iter().flat_map(|(_, l)| l).map(String::len).sum();

    // cara: best of 20 passes over every system, one thread.
    mine_all(&corpus);
    let best = (0..20).map(|_| mine_all(&corpus)).min().expect("passes");
    let cara_rate = lines as f64 / best.as_secs_f64();
    println!(
        "cara: {lines} lines ({:.1} MB) in {best:.2?}: {:.0} lines/s on one core, {:.0} MB/s",
        bytes as f64 / 1e6,
        cara_rate,
        bytes as f64 / 1e6 / best.as_secs_f64()
    );

    if std::env::var_os("CARA_LOG_PEER_PARTS").is_some() {
        let mut masked = Vec::new();
        let started = Instant::now();
        for _ in 0..20 {
            for (_, lines) in &corpus {
                for line in lines {
                    cara_operators::logs::mask::tokenize_masked(line, 128, &mut masked, None);
                    std::hint::black_box(&masked);
                }
            }
        }
        println!(
            "masking alone: {:.0} lines/s",
            lines as f64 * 20.0 / started.elapsed().as_secs_f64()
        );
    }

    // Steady state: the same lines again through warm miners (all matches).
    let mut miners: Vec<TemplateMiner> = corpus
        .iter()
        .map(|_| TemplateMiner::new(MinerConfig::default()))
        .collect();
    for ((system, lines), miner) in corpus.iter().zip(&mut miners) {
        for line in lines {
            miner.parse(system, line, 0);
        }
    }
    let started = Instant::now();
    for _ in 0..10 {
        for ((system, lines), miner) in corpus.iter().zip(&mut miners) {
            for line in lines {
                std::hint::black_box(miner.parse(system, line, 0));
            }
        }
    }
    let warm = lines as f64 * 10.0 / started.elapsed().as_secs_f64();
    println!(
        "cara, warm miners (every line matches a known template): {warm:.0} lines/s on one core"
    );

    // drain3 on the same lines, same order, in this run: five rounds, each a
    // cara measurement right beside a drain3 one, so that the noise of a shared
    // machine hits both sides of a ratio alike; the median ratio is reported.
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    for (system, lines) in &corpus {
        for line in lines {
            writeln!(file, "{system}\t{line}").expect("write");
        }
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/peers/drain3_loghub.py");
    let mut ratios = Vec::new();
    for round in 1..=5 {
        let cara = (0..10).map(|_| mine_all(&corpus)).min().expect("passes");
        let cara_rate = lines as f64 / cara.as_secs_f64();
        let out = match Command::new("python3")
            .arg(&script)
            .arg(file.path())
            .arg("1")
            .output()
        {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                println!(
                    "drain3 peer failed ({}): {}; install it with `python3 -m pip install drain3`",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return;
            }
            Err(e) => {
                println!("drain3 peer not run: python3: {e}");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let peer_lines: f64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
        let seconds: f64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        let peer_rate = peer_lines / seconds;
        let ratio = cara_rate / peer_rate;
        println!(
            "round {round}: cara {cara_rate:.0} lines/s, drain3 {peer_rate:.0} lines/s, ratio {ratio:.1}x"
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!("ratio cara / drain3, median of 5 rounds: {:.1}x", ratios[2]);
}
