//! The build cache issue's scenarios with Debian's ccache building zstd's C library through
//! `netwatch cache-server` (tests/src/build_hosts.rs): the three nginx mirrors of
//! tests/src/mirrors.rs, the agent in the client namespace watching each, and four build
//! hosts, each with its own server store and ccache directory.
//!
//! - cold (A): empty everywhere: every file compiles, and every entry reaches every mirror;
//! - warm (B): nothing local: every compilation is a hit served by the mirrors, and the
//!   objects are A's, byte for byte;
//! - failure (C): the primary's link is cut mid-build: no error, the objects are A's, and
//!   once the agent calls the primary Down, the server asks it nothing more;
//! - outage (D, new flags so every key is new): the host cut off mid-build: misses compile,
//!   entries queue, nothing is asked once the agent calls the host Down, and once the links
//!   are back every entry reaches every mirror.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use netwatch_client::state::{Health, Subject};
use netwatch_tests::{
    agent::Agent,
    build_hosts::{assert_same_objects, Build, BuildHost, CodeBase, Tool},
    mirrors::{ThreeMirrors, NAMES},
    require_privileges,
    verdicts::health,
};

const FLAGS: &str = "-O1";
/// Other code generation, so that every key of the outage build is new to the mirrors (a
/// define the code ignores would not do: ccache keys preprocessed output without defines).
const OUTAGE_FLAGS: &str = "-O2";

fn wait_health(agent: &Agent, mirror: &str, wanted: Health) -> Duration {
    wait_subject(agent, &Subject::Endpoint(mirror.to_string()), wanted)
}

fn wait_host(agent: &Agent, wanted: Health) -> Duration {
    wait_subject(agent, &Subject::Host, wanted)
}

fn wait_subject(agent: &Agent, subject: &Subject, wanted: Health) -> Duration {
    let started = Instant::now();
    loop {
        if agent
            .get()
            .is_ok_and(|state| health(&state, subject) == Some(wanted))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the agent did not call {subject:?} {wanted:?} within 15 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report(name: &str, build: &Build) {
    eprintln!(
        "{name}: {:.2} s, {} hits, {} compiled, {} errors",
        build.took.as_secs_f64(),
        build.hits(),
        build.misses(),
        build.errors()
    );
}

fn stored_entries(root: &Path) -> usize {
    walk(&root.join("buildcache"))
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .map(|e| e.expect("an entry").path())
            .map(|p| if p.is_dir() { walk(&p) } else { 1 })
            .sum()
    })
}

#[test]
fn ccache_builds_through_the_cache_server_cold_warm_through_a_cut_mirror_and_an_outage() {
    require_privileges();
    let code = CodeBase::zstd();
    let files = code.sources.len() as u64;
    let mirrors = ThreeMirrors::start([200_000_000, 100_000_000, 50_000_000]);
    let agent = mirrors.start_agent();
    let socket = agent.socket().to_path_buf();

    // Cold.
    let a = BuildHost::start("A", 8781, &mirrors, &socket);
    let cold = a.build(&mirrors, &code, FLAGS, &Tool::Ccache);
    report("cold", &cold);
    assert_eq!((cold.hits(), cold.misses(), cold.errors()), (0, files, 0));
    a.wait_written_back(&mirrors, &socket, Duration::from_secs(30));
    let entries = stored_entries(mirrors.mirror(NAMES[0]).root());
    assert!(
        entries as u64 >= files,
        "{entries} entries on the primary for {files} files"
    );
    for name in NAMES {
        assert_eq!(
            stored_entries(mirrors.mirror(name).root()),
            entries,
            "{name}"
        );
    }

    // Warm, from the mirrors.
    let b = BuildHost::start("B", 8782, &mirrors, &socket);
    let warm = b.build(&mirrors, &code, FLAGS, &Tool::Ccache);
    report("warm", &warm);
    assert_eq!((warm.hits(), warm.misses(), warm.errors()), (files, 0, 0));
    assert_same_objects(&cold, &warm);
    let status = b.status(&mirrors, &socket);
    assert_eq!(status["local_hits"], 0, "{status}");

    // The primary cut a third of the way in.
    let c = BuildHost::start("C", 8783, &mirrors, &socket);
    let running = c.start_build(&mirrors, &code, FLAGS, &Tool::Ccache);
    while running.done() < code.sources.len() / 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    mirrors.cut(NAMES[0]);
    let down_after = wait_health(&agent, NAMES[0], Health::Down);
    let asked_at_down = c.mirror_figure(&c.status(&mirrors, &socket), NAMES[0], "asked");
    let failure = running.finish(&c);
    report("failure", &failure);
    let status = c.status(&mirrors, &socket);
    eprintln!(
        "failure: the primary was Down {} ms after the cut; server: {status}",
        down_after.as_millis()
    );
    assert_eq!(failure.errors(), 0);
    assert_same_objects(&cold, &failure);
    assert!(
        failure.hits() + 2 >= files,
        "a cut primary cost more than two hits: {} of {files}",
        failure.hits()
    );
    assert_eq!(
        c.mirror_figure(&status, NAMES[0], "asked"),
        asked_at_down,
        "the server asked the primary after the agent called it Down"
    );
    mirrors.restore(NAMES[0]);

    // The host cut off a third of the way into a build whose every key is new: misses
    // compile, stores queue, and once the links are back every entry reaches every mirror.
    let d = BuildHost::start("D", 8784, &mirrors, &socket);
    let running = d.start_build(&mirrors, &code, OUTAGE_FLAGS, &Tool::Ccache);
    while running.done() < code.sources.len() / 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    mirrors.isolate();
    let down_after = wait_host(&agent, Health::Down);
    let asked_at_down: Vec<u64> = {
        let status = d.status(&mirrors, &socket);
        NAMES
            .iter()
            .map(|n| d.mirror_figure(&status, n, "asked"))
            .collect()
    };
    let outage = running.finish(&d);
    report("outage", &outage);
    assert_eq!((outage.misses(), outage.errors()), (files, 0));
    let status = d.status(&mirrors, &socket);
    eprintln!(
        "outage: the host was Down {} ms after the cut; server: {status}",
        down_after.as_millis()
    );
    for (name, before) in NAMES.iter().zip(asked_at_down) {
        assert_eq!(
            d.mirror_figure(&status, name, "asked"),
            before,
            "{name} was asked while Down"
        );
    }
    let stores = status["stores"].as_u64().expect("stores");
    mirrors.reconnect();
    let flushed = d.wait_written_back(&mirrors, &socket, Duration::from_secs(60));
    eprintln!(
        "outage: {stores} entries written back {} ms after the links came back",
        flushed.as_millis()
    );
    for name in NAMES {
        assert_eq!(
            stored_entries(mirrors.mirror(name).root()),
            entries + stores as usize,
            "{name} lacks some of the outage build's entries"
        );
    }
}

#[test]
fn sccache_builds_cold_then_warm_from_the_mirrors_through_the_webdav_side() {
    require_privileges();
    let sccache = Tool::sccache();
    let code = CodeBase::zstd();
    let files = code.sources.len() as u64;
    let mirrors = ThreeMirrors::start([200_000_000, 100_000_000, 50_000_000]);
    let agent = mirrors.start_agent();
    let socket = agent.socket().to_path_buf();

    let a = BuildHost::start("sccache A", 8791, &mirrors, &socket);
    let cold = a.build(&mirrors, &code, FLAGS, &sccache);
    report("sccache cold", &cold);
    assert_eq!((cold.hits(), cold.misses(), cold.errors()), (0, files, 0));
    a.wait_written_back(&mirrors, &socket, Duration::from_secs(30));

    let b = BuildHost::start("sccache B", 8792, &mirrors, &socket);
    let warm = b.build(&mirrors, &code, FLAGS, &sccache);
    report("sccache warm", &warm);
    assert_eq!((warm.hits(), warm.misses(), warm.errors()), (files, 0, 0));
    assert_same_objects(&cold, &warm);
    let status = b.status(&mirrors, &socket);
    assert_eq!(status["refused"], 0, "{status}");
}
