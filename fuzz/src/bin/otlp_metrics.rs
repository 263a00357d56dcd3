//! Fuzz target `otlp_metrics`: see `cara_pipeline::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::fuzzing::target("otlp_metrics");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
