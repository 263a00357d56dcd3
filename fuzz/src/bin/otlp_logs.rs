//! Fuzz target `otlp_logs`: see `cara_pipeline::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::fuzzing::target("otlp_logs");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
