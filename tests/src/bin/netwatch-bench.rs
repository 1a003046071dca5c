//! `netwatch-bench`: netwatch's benchmarks, run as root by `cargo xtask bench`.

fn main() -> std::process::ExitCode {
    netwatch_tests::bench::main()
}
