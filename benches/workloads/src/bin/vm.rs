//! vm: VM heaps: 10 blocks of 2 MiB per batch (see `bench_workloads::big`).
fn main() {
    bench_workloads::big::main(
        "vm",
        "VM heaps: 10 blocks of 2 MiB per batch",
        &[(2 << 20, 10)],
        20,
    );
}
