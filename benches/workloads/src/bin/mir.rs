//! mir: compiler IR arenas: 100 blocks of 256 KiB per batch (see `bench_workloads::big`).
fn main() {
    bench_workloads::big::main(
        "mir",
        "compiler IR arenas: 100 blocks of 256 KiB per batch",
        &[(256 << 10, 100)],
        20,
    );
}
