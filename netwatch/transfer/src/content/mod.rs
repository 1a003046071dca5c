//! What an artifact is made of: content-defined chunks, their digests and encodings, the
//! key that names an artifact and the manifest that lists its chunks.

pub mod chunk;
pub mod compress;
pub mod digest;
pub mod key;
pub mod manifest;
pub mod pack;
