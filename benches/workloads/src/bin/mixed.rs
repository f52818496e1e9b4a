//! mixed: the json, mir and vm batches shuffled together: 1000 x 64 KiB,
//! 100 x 256 KiB and 10 x 2 MiB per batch (see `bench_workloads::big`).
fn main() {
    bench_workloads::big::main(
        "mixed",
        "json, mir and vm batches shuffled together: 1000 x 64 KiB + 100 x 256 KiB + 10 x 2 MiB per batch",
        &[(64 << 10, 1000), (256 << 10, 100), (2 << 20, 10)],
        10,
    );
}
