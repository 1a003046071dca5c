//! The get cache's cap, on disk: gets that together fetch far more than `[cache] max_size`
//! leave at most the cap after each one (the files' own sizes, walked here, not netwatch's
//! count of them), and a get that runs while other gets evict completes byte-identical.

mod transfer_cli;

use std::path::Path;
use std::time::Instant;

use transfer_cli::{mirror_table, mixed_data, verify_cache, Cli};

const CAP: u64 = 3 << 20;
const SMALL: usize = 2 << 20;
const SMALLS: usize = 4;
const BIG: usize = 12 << 20;

/// Bytes of the cached ranges, chunks and seeds (their manifests aside), by walking the
/// cache's own directories.
fn cached_bytes(cache: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| match entry.file_type() {
                Ok(kind) if kind.is_dir() => walk(&entry.path()),
                Ok(_) if entry.file_name().to_string_lossy().ends_with(".json") => 0,
                Ok(_) => entry.metadata().map_or(0, |m| m.len()),
                Err(_) => 0,
            })
            .sum()
    }
    ["packs", "chunks", "seeds"]
        .iter()
        .map(|d| walk(&cache.join(d)))
        .sum()
}

#[test]
fn the_cap_holds_on_disk_and_eviction_never_breaks_a_running_get() {
    let cli = Cli::new("");
    let mirror = cli.dir().join("mirror");
    cli.write_config(&format!(
        "[cache]\nmax_size = \"3MiB\"\n\n{}",
        mirror_table("m", 1, &format!("file://{}", mirror.display()))
    ));
    let inputs = cli.subdir("in");
    let mut artifacts = Vec::new();
    for i in 0..=SMALLS {
        let (size, key) = match i {
            0 => (BIG, "builds/big.bin".to_string()),
            i => (SMALL, format!("builds/small-{i}.bin")),
        };
        let data = mixed_data(size, 40 + i as u64);
        let file = inputs.join(format!("{i}.bin"));
        std::fs::write(&file, &data).unwrap();
        cli.put(&file, &key, None);
        artifacts.push((key, data));
    }
    let outputs = cli.subdir("out");
    let cache = cli.cache();

    // One after another: each get evicts down to the cap once it is done.
    for (i, (key, data)) in artifacts.iter().enumerate().skip(1) {
        let out = outputs.join(format!("seq-{i}.bin"));
        cli.get(key, &out).json();
        assert!(std::fs::read(&out).unwrap() == *data, "{key} differs");
        let held = cached_bytes(&cache);
        println!("after getting {key}: {held} bytes cached (cap {CAP})");
        assert!(
            held <= CAP,
            "the cache holds {held} bytes after {key}, over its cap of {CAP}"
        );
    }
    let shown = cli
        .run(&["cache", "--json", "--cache", cache.to_str().unwrap()])
        .json();
    assert_eq!(
        shown["bytes"].as_u64(),
        Some(cached_bytes(&cache)),
        "`netwatch cache` counts otherwise than the files on disk: {shown}"
    );

    // At once: the big get (four times the cap) while the small ones finish and evict.
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (i, (key, data)) in artifacts.iter().enumerate() {
            let (cli, out) = (&cli, outputs.join(format!("par-{i}.bin")));
            scope.spawn(move || {
                cli.get(key, &out).json();
                println!("{key} done after {:?}", started.elapsed());
                assert!(
                    std::fs::read(&out).unwrap() == *data,
                    "{key}, got while others evicted, differs"
                );
            });
        }
    });
    let held = cached_bytes(&cache);
    println!("after the gets at once: {held} bytes cached");
    assert!(held <= CAP, "{held} bytes cached, over the cap of {CAP}");
    verify_cache(&cache);
}
