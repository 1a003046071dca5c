//! Basic auth against the web configuration's bcrypt hashes. bcrypt is slow on purpose (tens
//! of milliseconds): a check runs on a blocking thread, one at a time, so guessing cannot
//! take the serving thread or both cores from the clients; a scraper's credentials, once
//! verified, are remembered and cost nothing on its next scrape. A name that is no user's is
//! checked against a hash of the users' cost all the same, so the answer's time does not
//! tell which names exist.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use tokio::sync::Semaphore;

/// Credentials remembered as verified; a fleet has a scraper or two per host.
const REMEMBERED: usize = 16;

/// The users and what has been verified.
#[derive(Debug)]
pub struct BasicAuth {
    users: Arc<BTreeMap<String, String>>,
    /// `Authorization` header values that verified (never ones that failed).
    verified: Mutex<HashSet<String>>,
    checking: Semaphore,
    /// A hash no password matches in practice, at the users' cost, for unknown names.
    decoy: Arc<String>,
}

impl BasicAuth {
    pub fn new(users: BTreeMap<String, String>) -> Self {
        let cost = users
            .values()
            .find_map(|hash| cost_of(hash))
            .unwrap_or(bcrypt::DEFAULT_COST);
        // Made once, at start, as root reads the web config: one bcrypt's time.
        let decoy = bcrypt::hash("netwatch: no such user", cost).unwrap_or_default();
        Self {
            users: Arc::new(users),
            verified: Mutex::new(HashSet::new()),
            checking: Semaphore::new(1),
            decoy: Arc::new(decoy),
        }
    }

    /// Whether `authorization` (the header's value, if any) names a user with its password.
    pub async fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(header) = authorization.and_then(|h| std::str::from_utf8(h).ok()) else {
            return false;
        };
        if self.remembered(header) {
            return true;
        }
        let Some((user, password)) = credentials(header) else {
            return false;
        };
        let Ok(_turn) = self.checking.acquire().await else {
            return false;
        };
        let (users, decoy) = (Arc::clone(&self.users), Arc::clone(&self.decoy));
        let verified = tokio::task::spawn_blocking(move || match users.get(&user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &decoy);
                false
            }
        })
        .await
        .unwrap_or(false);
        if verified {
            self.remember(header);
        }
        verified
    }

    fn remembered(&self, header: &str) -> bool {
        self.verified
            .lock()
            .is_ok_and(|verified| verified.contains(header))
    }

    fn remember(&self, header: &str) {
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
            verified.insert(header.to_owned());
        }
    }
}

/// The cost a bcrypt hash was made with: `$2y$COST$...`.
fn cost_of(hash: &str) -> Option<u32> {
    hash.split('$')
        .nth(2)?
        .parse()
        .ok()
        .filter(|c| (4..=31).contains(c))
}

/// `Basic base64(user:password)` → (user, password).
fn credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[tokio::test]
    async fn only_a_user_with_its_password_is_allowed() {
        // Made by libxcrypt (`perl -e 'print crypt("secret", "$2b$04$abcdefghijklmnopqrstuu")'`),
        // not by the crate that checks it.
        let hash = "$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW";
        let auth = BasicAuth::new(BTreeMap::from([("prometheus".to_owned(), hash.to_owned())]));
        let good = header("prometheus", "secret");
        assert!(auth.allows(Some(good.as_bytes())).await);
        assert!(auth.allows(Some(good.as_bytes())).await, "remembered");
        for bad in [
            header("prometheus", "Secret"),
            header("grafana", "secret"),
            header("prometheus", ""),
            "Bearer secret".to_owned(),
            "Basic not-base64!".to_owned(),
        ] {
            assert!(!auth.allows(Some(bad.as_bytes())).await, "{bad}");
        }
        assert!(!auth.allows(None).await);
    }

    #[test]
    fn an_unknown_name_is_checked_against_a_decoy_of_the_users_cost() {
        assert_eq!(
            cost_of("$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW"),
            Some(4)
        );
        assert_eq!(cost_of("plain"), None);
        let hash = "$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW";
        let auth = BasicAuth::new(BTreeMap::from([("prometheus".to_owned(), hash.to_owned())]));
        assert_eq!(
            cost_of(&auth.decoy),
            Some(4),
            "the decoy costs what a user's check costs"
        );
        assert!(!bcrypt::verify("secret", &auth.decoy).unwrap());
    }
}
