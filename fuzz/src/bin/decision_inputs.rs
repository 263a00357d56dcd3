//! Fuzz target `decision_inputs`: see `cara_pipeline::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::fuzzing::target("decision_inputs");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
