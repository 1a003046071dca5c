//! Putting the mirrors in the order a transfer tries them, and a `get` that does so: figures
//! older than `STALE_AFTER` measured again (every mirror at once), the agent's verdict on
//! each mirror's endpoint asked when one has an endpoint, best first; the scoreboard learns
//! from the transfer afterwards. This is what `netwatch get` does; a library user gets the
//! same by calling [`get_ranked`].

use std::sync::Arc;

use netwatch_client::{retry::StateSource, state::NetworkState};

use crate::{
    get, measure::MeasureLimits, Fetch, MirrorStore, Scoreboard, Summary, TransferError,
    TransferOptions, STALE_AFTER,
};

/// `mirrors`, best first by `board`'s figures (measured again where stale) and the agent's
/// verdicts (from `options.state`). The new figures stay in `board`: save it after.
pub async fn rank_mirrors(
    board: &mut Scoreboard,
    mirrors: &[MirrorStore],
    options: &TransferOptions,
) -> Result<Vec<MirrorStore>, TransferError> {
    let measured = board.refresh(mirrors, STALE_AFTER, MeasureLimits::QUICK);
    options.unless_cancelled(measured).await?;
    let state = endpoint_state(options.state.as_ref(), mirrors).await;
    let ranked: Vec<MirrorStore> = board
        .ranked(mirrors, state.as_deref())
        .iter()
        .map(|r| mirrors[r.index].clone())
        .collect();
    tracing::debug!(order = ?ranked.iter().map(MirrorStore::name).collect::<Vec<_>>(), "mirrors ranked");
    Ok(ranked)
}

/// A `get` from the best mirror first: ranks the mirrors with the scoreboard kept in the
/// cache's directory, fetches, and records what the transfer showed of each mirror. A
/// scoreboard that cannot be saved costs only figures: a warning.
pub async fn get_ranked(
    fetch: Fetch<'_>,
    options: &TransferOptions,
) -> Result<Summary, TransferError> {
    let mut board = Scoreboard::load(fetch.cache.root());
    let ranked = rank_mirrors(&mut board, fetch.mirrors, options).await?;
    board.save_or_warn();
    let fetch = Fetch {
        mirrors: &ranked,
        ..fetch
    };
    let summary = get(fetch, options).await?;
    board.observe(&summary, &ranked);
    board.save_or_warn();
    Ok(summary)
}

/// The agent's current state, if some mirror has an endpoint to ask about and the agent
/// answers.
async fn endpoint_state(
    source: Option<&Arc<dyn StateSource>>,
    mirrors: &[MirrorStore],
) -> Option<Arc<NetworkState>> {
    if mirrors.iter().all(|m| m.endpoint().is_none()) {
        return None;
    }
    match source?.watch().await {
        Ok(watch) => Some(watch.current()),
        Err(error) => {
            tracing::debug!(%error, "no endpoint verdicts for ranking the mirrors");
            None
        }
    }
}
