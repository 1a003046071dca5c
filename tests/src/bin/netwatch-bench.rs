//! `netwatch-bench`: netwatch's benchmarks, run as root by `cargo xtask bench`.

#[path = "../bench/mod.rs"]
mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
