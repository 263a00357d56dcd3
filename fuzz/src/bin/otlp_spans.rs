//! Fuzz target `otlp_spans`: see `cara_pipeline::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::fuzzing::target("otlp_spans");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
