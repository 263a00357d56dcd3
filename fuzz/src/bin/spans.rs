//! Fuzz target `spans`: see `cara_pipeline::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::fuzzing::target("spans");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
