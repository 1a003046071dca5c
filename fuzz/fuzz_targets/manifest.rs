//! A manifest as a hostile or broken mirror may serve it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netwatch_transfer::{ArtifactKey, Manifest};

fuzz_target!(|data: &[u8]| {
    let key: ArtifactKey = "builds/app.tar".parse().expect("a valid key");
    if let Ok(manifest) = Manifest::from_json(data, &key) {
        // What was accepted must say the same once written again.
        let again =
            Manifest::from_json(&manifest.to_json(), &key).expect("a written manifest reads");
        assert_eq!(again, manifest);
    }
});
