//! Copying a format 2 manifest's packs: whole, from the winner (or another source whose
//! manifest names the same pack), each chunk the manifest places in them checked on the
//! way. The destination then holds the same packs under the same names, so the manifest is
//! copied as it is and a get can fall back between the two mirrors range by range.

use std::collections::{BTreeMap, HashSet};

use super::{Copied, Run};
use crate::{
    compress::decode,
    error::TransferError,
    fallback::{self, Failure},
    sync_plan::Held,
    ArtifactKey, ChunkRef, Manifest, PackId, Progress,
};

impl Run<'_> {
    /// Copies the packs of `manifest` that `destination` lacks; adds what it did to `copied`.
    pub(super) async fn copy_packs(
        &self,
        key: &ArtifactKey,
        manifest: &Manifest,
        held: &[Held],
        sources: &[usize],
        destination: usize,
        copied: &mut Copied,
    ) -> Result<(), TransferError> {
        // Each pack with the chunks the manifest places in it (a chunk twice, once).
        let mut packs: BTreeMap<PackId, Vec<(ChunkRef, u64)>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for chunk in manifest.chunks.iter().filter(|c| seen.insert(c.id)) {
            if let Some(spot) = manifest.spot(chunk) {
                packs
                    .entry(spot.pack)
                    .or_default()
                    .push((chunk.clone(), spot.offset));
            }
        }
        let target = &self.mirrors[destination];
        for (pack, chunks) in packs {
            let there = self
                .on_mirror(
                    destination,
                    || {
                        format!(
                            "looking for pack {pack} of {key} on mirror `{}`",
                            target.name()
                        )
                    },
                    || async move { target.has_pack(pack).await.map_err(Failure::store) },
                )
                .await?;
            if there {
                copied.present += chunks.len();
                continue;
            }
            let artifact_bytes: u64 = chunks.iter().map(|(c, _)| u64::from(c.size)).sum();
            if self.dry_run {
                copied.chunks += chunks.len();
                copied.bytes += chunks.iter().map(|(c, _)| c.stored_size).sum::<u64>();
                continue;
            }
            // The sources whose manifest of this key names the pack.
            let holders: Vec<usize> = sources
                .iter()
                .copied()
                .filter(|&m| {
                    held[m]
                        .valid()
                        .is_some_and(|theirs| theirs.packs.contains(&pack))
                })
                .collect();
            let steps: Vec<usize> = fallback::get_ladder(holders.len())
                .into_iter()
                .map(|i| holders[i])
                .collect();
            let chunks = &chunks;
            let fetched = fallback::run(
                self.options,
                self.mirrors,
                &self.health,
                &steps,
                || format!("pack {pack} of {key} for mirror `{}`", target.name()),
                |m| async move {
                    let source = &self.mirrors[m];
                    let data = source.get_pack(pack).await.map_err(Failure::store)?;
                    let check = chunks.clone();
                    // Hashing and decompressing are CPU work: off the async threads.
                    let (data, checked) = tokio::task::spawn_blocking(move || {
                        let checked = check.iter().try_for_each(|(chunk, at)| {
                            let body = usize::try_from(*at)
                                .ok()
                                .and_then(|at| data.get(at..at + chunk.stored_size as usize))
                                .ok_or_else(|| {
                                    format!("chunk {} lies past the pack's end", chunk.id)
                                })?;
                            decode(body, chunk).map(drop).map_err(|bad| bad.to_string())
                        });
                        (data, checked)
                    })
                    .await
                    .expect("decoding does not panic");
                    checked.map_err(|bad| {
                        Failure::Mirror(format!("mirror `{}` holds bad data: {bad}", source.name()))
                    })?;
                    Ok(data)
                },
            )
            .await?;
            self.served(&fetched);
            let source = fetched.mirror;
            let length = fetched.value.len() as u64;
            let payload = object_store::PutPayload::from(fetched.value);
            let payload = &payload;
            self.on_mirror(
                destination,
                || format!("writing pack {pack} of {key} to mirror `{}`", target.name()),
                || async move {
                    target
                        .put_pack(pack, payload.clone())
                        .await
                        .map_err(Failure::store)
                },
            )
            .await?;
            copied.chunks += chunks.len();
            copied.bytes += length;
            self.options.report(Progress::Chunk {
                size: artifact_bytes,
                moved: length,
                mirror: format!("{} → {}", self.mirrors[source].name(), target.name()),
            });
        }
        Ok(())
    }
}
