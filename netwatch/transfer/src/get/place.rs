//! Writing checked chunks into the output where they belong, as they arrive, in any order:
//! each at every offset the manifest gives it. The output is a temporary file the size of
//! the artifact; it is put in place only once every chunk is in it (see `output.rs`).

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io,
    os::unix::fs::FileExt,
    sync::Mutex,
};

use crate::{digest::Digest, Manifest};

/// The output being filled, and which chunks it has.
pub struct Placer {
    file: File,
    offsets: HashMap<Digest, Vec<u64>>,
    placed: Mutex<HashSet<Digest>>,
}

impl Placer {
    /// For `manifest`'s chunks, into `file` (sized to the artifact here).
    pub fn new(file: File, manifest: &Manifest) -> io::Result<Self> {
        file.set_len(manifest.size)?;
        let mut offsets: HashMap<Digest, Vec<u64>> = HashMap::new();
        for chunk in &manifest.chunks {
            offsets.entry(chunk.id).or_default().push(chunk.offset);
        }
        Ok(Self {
            file,
            offsets,
            placed: Mutex::new(HashSet::new()),
        })
    }

    /// Writes a chunk whose content the caller checked against `id` wherever it occurs.
    pub fn place(&self, id: Digest, data: &[u8]) -> io::Result<()> {
        for offset in self.offsets.get(&id).into_iter().flatten() {
            self.file.write_all_at(data, *offset)?;
        }
        self.placed
            .lock()
            .expect("never held across a panic")
            .insert(id);
        Ok(())
    }

    /// Starts writing what is placed so far to the disk, without waiting for it: the fsync
    /// that commits the output then finds little left, so the disk works while the network
    /// does instead of after it.
    pub fn start_writeback(&self) {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a descriptor this placer owns; no memory is passed. Advisory: an error
        // (a file system without it) only leaves the work to the fsync.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }

    pub fn has(&self, id: Digest) -> bool {
        self.placed
            .lock()
            .expect("never held across a panic")
            .contains(&id)
    }

    /// Whether every chunk is in.
    pub fn complete(&self) -> bool {
        self.placed.lock().expect("never held across a panic").len() == self.offsets.len()
    }
}
