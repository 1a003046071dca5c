//! `gc`: removes from a mirror the packs (and format 1 chunk objects) that no manifest on it
//! names any more, once they are older than a grace period: a put uploads its packs before
//! its manifest, so a young unnamed pack may belong to a put still running.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::{
    manifest::Manifest, store::chunk_path, sync_keys::key_of, MirrorStore, PackId, StoreError,
};

/// How long an unnamed pack is left alone: longer than any put takes.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(6 * 3600);

/// What a gc does.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Unnamed objects younger than this stay.
    pub grace: Duration,
    /// Decide and count, remove nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            dry_run: false,
        }
    }
}

/// What a gc found and did on one mirror.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcSummary {
    pub mirror: String,
    pub dry_run: bool,
    /// Manifests read: everything they name stays.
    pub manifests: usize,
    /// Packs and chunk objects kept because a manifest names them.
    pub named: usize,
    /// Unnamed, but younger than the grace period.
    pub young: usize,
    /// Removed (or, in a dry run, to remove), and their bytes.
    pub removed: usize,
    pub removed_bytes: u64,
}

/// Why a gc stopped before removing anything.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest that cannot be read may name anything: removing would risk it.
    #[error(
        "mirror `{mirror}`: the manifest {path} cannot be read ({problem}): gc removes nothing \
         while a manifest may name what it would remove; fix or delete that manifest, then run \
         it again"
    )]
    Unreadable {
        mirror: String,
        path: String,
        problem: String,
    },
}

/// Removes what no manifest on `mirror` names and is older than the grace period.
pub async fn gc(mirror: &MirrorStore, options: &GcOptions) -> Result<GcSummary, GcError> {
    let mut summary = GcSummary {
        mirror: mirror.name().to_string(),
        dry_run: options.dry_run,
        ..GcSummary::default()
    };
    // Listed first: an object written after the manifests are read is young anyway.
    let objects = mirror.list_stored().await?;
    let (mut packs, mut chunks) = (HashSet::new(), HashSet::new());
    for path in mirror.list_manifests("").await? {
        let unreadable = |problem: String| GcError::Unreadable {
            mirror: mirror.name().to_string(),
            path: path.clone(),
            problem,
        };
        let key = key_of(&path).ok_or_else(|| unreadable("not a key's path".into()))?;
        let json = mirror.get_manifest(&key).await?;
        let manifest = Manifest::from_json(&json, &key).map_err(|e| unreadable(e.to_string()))?;
        summary.manifests += 1;
        packs.extend(manifest.packs.iter().copied());
        chunks.extend(
            manifest
                .chunks
                .iter()
                .filter(|c| c.pack.is_none())
                .map(|c| chunk_path(c.id, c.encoding)),
        );
    }
    let now = SystemTime::now();
    for object in objects {
        let named = match object.path.strip_prefix("packs/") {
            Some(rest) => pack_of(rest).is_some_and(|id| packs.contains(&id)),
            None => chunks.contains(&object.path),
        };
        if named {
            summary.named += 1;
            continue;
        }
        if now.duration_since(object.modified).unwrap_or_default() < options.grace {
            summary.young += 1;
            continue;
        }
        if !options.dry_run {
            mirror.delete(&object.path).await?;
        }
        summary.removed += 1;
        summary.removed_bytes += object.size;
    }
    Ok(summary)
}

/// The pack a `packs/<aa>/<id>.pack` path names (given without `packs/`).
fn pack_of(rest: &str) -> Option<PackId> {
    let (_, name) = rest.split_once('/')?;
    PackId::parse(name.strip_suffix(".pack")?).ok()
}

impl std::fmt::Display for GcSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gc {}{}: {} manifests read; {} objects named, {} unnamed but younger than the grace \
             period, {} {} ({:.2} MiB)",
            self.mirror,
            if self.dry_run { " (dry run)" } else { "" },
            self.manifests,
            self.named,
            self.young,
            self.removed,
            if self.dry_run { "to remove" } else { "removed" },
            self.removed_bytes as f64 / (1 << 20) as f64
        )
    }
}
