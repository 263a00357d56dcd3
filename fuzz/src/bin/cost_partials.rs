//! Fuzz target `cost_partials`: see `cara_pipeline::fuzzing` for what it checks.

fn main() {
    let check = cara_pipeline::fuzzing::target("cost_partials");
    afl::fuzz!(|data: &[u8]| {
        check(data);
    });
}
