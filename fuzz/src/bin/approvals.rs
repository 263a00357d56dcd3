//! Fuzz target `approvals`: see `cara_pipeline::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::fuzzing::target("approvals");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
