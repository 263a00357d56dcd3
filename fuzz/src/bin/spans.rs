//! Fuzz target `spans`: see `cara_pipeline::decode::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::decode::fuzzing::target("spans");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
