//! The output as the cache's copy (cache/seed.rs): nothing written twice, and nothing from
//! it trusted.

use std::{fs, io::Write as _, os::unix::fs::FileExt as _};

use super::{key, noise, Setup};

#[tokio::test]
async fn a_get_links_its_output_into_the_cache_instead_of_writing_ranges() {
    let setup = Setup::new();
    let data = noise(3 << 20, 11);
    let key = key("seeded.bin");
    setup.put_new("in", &data, &key, &setup.writer("a")).await;
    let readers = setup.readers(&["a"]);
    let first = setup.get_into(&key, "out", &readers).await.unwrap();
    assert!(first.chunks_moved > 0);
    let usage = setup.cache().usage();
    assert_eq!(
        (usage.ranges, usage.chunks, usage.seeds),
        (0, 0, 1),
        "{usage:?}"
    );

    // The seed is the output's inode: it outlives the output's name.
    fs::remove_file(setup.path("out")).unwrap();
    let again = setup.get_into(&key, "out2", &readers).await.unwrap();
    assert_eq!(fs::read(setup.path("out2")).unwrap(), data);
    assert_eq!(again.chunks_moved, 0, "{again:?}");
}

#[tokio::test]
async fn chunks_changed_in_the_output_since_are_fetched_again() {
    let setup = Setup::new();
    let data = noise(3 << 20, 12);
    let key = key("edited.bin");
    setup.put_new("in", &data, &key, &setup.writer("a")).await;
    let readers = setup.readers(&["a"]);
    let first = setup.get_into(&key, "out", &readers).await.unwrap();

    // The user edits the output in place: the seed shares its blocks.
    let out = fs::OpenOptions::new()
        .write(true)
        .open(setup.path("out"))
        .unwrap();
    out.write_all_at(b"edited by hand", 1 << 20).unwrap();
    (&out).flush().unwrap();
    let again = setup.get_into(&key, "out2", &readers).await.unwrap();
    assert_eq!(fs::read(setup.path("out2")).unwrap(), data);
    assert!(
        again.chunks_moved >= 1 && again.chunks_moved < first.chunks_moved,
        "moved {} of {}",
        again.chunks_moved,
        first.chunks_moved
    );
}
