//! json: JSON-like documents: 1000 blocks of 64 KiB per batch (see `bench_workloads::big`).
fn main() {
    bench_workloads::big::main(
        "json",
        "JSON-like documents: 1000 blocks of 64 KiB per batch",
        &[(64 << 10, 1000)],
        20,
    );
}
