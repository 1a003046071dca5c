//! The build cache issue's scenarios with real compiler caches building zstd's C library
//! through `netwatch cache-server` (tests/src/build_hosts.rs), on a site of build hosts and
//! two nginx mirrors, each in its own namespace, every host with its own agent watching each
//! mirror and its own links to them (tests/src/build_site.rs):
//!
//! - cold (A): empty everywhere: every file compiles, and every entry reaches both mirrors;
//! - warm (B): nothing local: every compilation is a hit served by the mirrors, and the
//!   objects are A's, byte for byte;
//! - failure (C): C's link to the primary is cut mid-build: no error, the objects are A's,
//!   and once C's agent calls the primary Down, C's server asks it nothing more;
//! - outage (D, new flags so every key is new): D cut off mid-build: misses compile, entries
//!   queue, nothing is asked once D's agent calls the host Down, and once D is back every
//!   entry reaches both mirrors.
//!
//! sccache does cold and warm the same way, through the server's WebDAV side.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use netwatch_client::state::{Health, Subject};
use netwatch_tests::{
    build_hosts::{assert_same_objects, Build, BuildHost, CodeBase, Tool},
    build_site::{BuildSite, MirrorPort, SiteHost, PORT},
    require_privileges,
    verdicts::health,
};

const MIRRORS: [&str; 2] = ["primary", "secondary"];
const RATE: u64 = 200_000_000;
const FLAGS: &str = "-O1";
/// Other code generation, so that every key of the outage build is new to the mirrors (a
/// define the code ignores would not do: ccache keys preprocessed output without defines).
const OUTAGE_FLAGS: &str = "-O2";

fn wait_subject(host: &SiteHost, subject: &Subject, wanted: Health) -> Duration {
    let started = Instant::now();
    loop {
        if host
            .agent()
            .get()
            .is_ok_and(|state| health(&state, subject) == Some(wanted))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{}'s agent did not call {subject:?} {wanted:?} within 15 s",
            host.name
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

fn asked(host: &BuildHost, mirror: &str) -> u64 {
    host.mirror_figure(&host.status(), mirror, "asked")
}

#[test]
fn ccache_builds_through_the_cache_server_cold_warm_through_a_cut_mirror_and_an_outage() {
    require_privileges();
    let code = CodeBase::zstd();
    let files = code.sources.len() as u64;
    let mut site = BuildSite::start(&["A", "B", "C", "D"], &MIRRORS, RATE, MirrorPort(PORT));
    site.start_agents();

    // Cold.
    let a = BuildHost::start(site.host("A"));
    let cold = a.build(&code, FLAGS, &Tool::Ccache);
    report("cold", &cold);
    assert_eq!((cold.hits(), cold.misses(), cold.errors()), (0, files, 0));
    a.wait_written_back(Duration::from_secs(30));
    let entries = stored_entries(site.mirrors[0].root());
    assert!(
        entries as u64 >= files,
        "{entries} entries on the primary for {files} files"
    );
    assert_eq!(
        stored_entries(site.mirrors[1].root()),
        entries,
        "the secondary"
    );

    // Warm, from the mirrors.
    let b = BuildHost::start(site.host("B"));
    let warm = b.build(&code, FLAGS, &Tool::Ccache);
    report("warm", &warm);
    assert_eq!((warm.hits(), warm.misses(), warm.errors()), (files, 0, 0));
    assert_same_objects(&cold, &warm);
    assert_eq!(b.status()["local_hits"], 0);

    // C's link to the primary cut a third of the way in.
    let c_host = site.host("C");
    let c = BuildHost::start(c_host);
    let running = c.start_build(&code, FLAGS, &Tool::Ccache);
    while running.done() < code.sources.len() / 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    c_host.cut(0);
    let down_after = wait_subject(c_host, &Subject::Endpoint(MIRRORS[0].into()), Health::Down);
    let asked_at_down = asked(&c, MIRRORS[0]);
    let failure = running.finish(&c);
    report("failure", &failure);
    eprintln!(
        "failure: the primary was Down {} ms after the cut; server: {}",
        down_after.as_millis(),
        c.status()
    );
    assert_eq!(failure.errors(), 0);
    assert_same_objects(&cold, &failure);
    assert!(
        failure.hits() + 2 >= files,
        "a cut primary cost more than two hits: {} of {files}",
        failure.hits()
    );
    assert_eq!(
        asked(&c, MIRRORS[0]),
        asked_at_down,
        "the server asked the primary after the agent called it Down"
    );
    c_host.restore(0);

    // D cut off a third of the way into a build whose every key is new.
    let d_host = site.host("D");
    let d = BuildHost::start(d_host);
    let running = d.start_build(&code, OUTAGE_FLAGS, &Tool::Ccache);
    while running.done() < code.sources.len() / 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    d_host.isolate();
    let down_after = wait_subject(d_host, &Subject::Host, Health::Down);
    let asked_at_down: Vec<u64> = MIRRORS.iter().map(|m| asked(&d, m)).collect();
    let outage = running.finish(&d);
    report("outage", &outage);
    assert_eq!((outage.misses(), outage.errors()), (files, 0));
    let status = d.status();
    eprintln!(
        "outage: the host was Down {} ms after the cut; server: {status}",
        down_after.as_millis()
    );
    for (mirror, before) in MIRRORS.iter().zip(asked_at_down) {
        assert_eq!(asked(&d, mirror), before, "{mirror} was asked while Down");
    }
    let stores = status["stores"].as_u64().expect("stores");
    d_host.reconnect();
    let flushed = d.wait_written_back(Duration::from_secs(60));
    eprintln!(
        "outage: {stores} entries written back {} ms after the links came back",
        flushed.as_millis()
    );
    for mirror in &site.mirrors {
        assert_eq!(
            stored_entries(mirror.root()),
            entries + stores as usize,
            "{} lacks some of the outage build's entries",
            mirror.name
        );
    }
}

#[test]
fn sccache_builds_cold_then_warm_from_the_mirrors_through_the_webdav_side() {
    require_privileges();
    let sccache = Tool::sccache();
    let code = CodeBase::zstd();
    let files = code.sources.len() as u64;
    let mut site = BuildSite::start(&["A", "B"], &MIRRORS, RATE, MirrorPort(PORT));
    site.start_agents();

    let a = BuildHost::start(site.host("A"));
    let cold = a.build(&code, FLAGS, &sccache);
    report("sccache cold", &cold);
    assert_eq!((cold.hits(), cold.misses(), cold.errors()), (0, files, 0));
    a.wait_written_back(Duration::from_secs(30));

    let b = BuildHost::start(site.host("B"));
    let warm = b.build(&code, FLAGS, &sccache);
    report("sccache warm", &warm);
    assert_eq!((warm.hits(), warm.misses(), warm.errors()), (files, 0, 0));
    assert_same_objects(&cold, &warm);
    assert_eq!(b.status()["refused"], 0);
}
