//! Fuzz target `logs`: see `cara_pipeline::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::fuzzing::target("logs");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
