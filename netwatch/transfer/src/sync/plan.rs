//! Which manifest of a key wins a `sync`, and what each destination mirror must do about it:
//! the pure part of sync, no I/O, so every case is tested directly.
//!
//! Last write wins: the manifest with the larger `created_unix_ms`. Two manifests written in
//! the same millisecond with different artifacts are ordered by the artifact's digest (the
//! larger wins), so every run and every mirror choose alike. Two with the same time and the
//! same artifact are the same version, even if their chunks are stored differently.

use crate::{digest::Digest, manifest::Manifest};

/// What one mirror holds for a key.
#[derive(Clone, Debug)]
pub(crate) enum Held {
    Absent,
    Valid(Manifest),
    /// A manifest that fails its checks: never copied, and replaced where it can be.
    Invalid(String),
    /// It could not be read, after every retry.
    Unreadable(String),
}

impl Held {
    pub(crate) fn valid(&self) -> Option<&Manifest> {
        match self {
            Held::Valid(manifest) => Some(manifest),
            _ => None,
        }
    }
}

/// A manifest's rank under "last write wins".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    created_unix_ms: u64,
    checksum: Digest,
}

impl Version {
    pub(crate) fn of(manifest: &Manifest) -> Self {
        Self {
            created_unix_ms: manifest.created_unix_ms,
            checksum: manifest.checksum,
        }
    }
}

/// What a mirror may do in this sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Role {
    /// Its manifests and chunks may be copied to others.
    pub source: bool,
    /// Others' manifests and chunks may be copied to it.
    pub destination: bool,
}

/// What a destination does about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Copy the winner's missing chunks, then its manifest. `replaces` is the problem of the
    /// invalid manifest it holds, if it holds one.
    Copy { replaces: Option<String> },
    /// It holds the winning version.
    UpToDate,
    /// It holds a newer version than any source: kept as it is.
    Newer,
    /// What it holds could not be read, so it may be newer: nothing is written.
    Unknown(String),
}

/// A key's plan.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPlan {
    /// The source whose manifest wins (on a tie, the first in priority order).
    pub winner: Option<usize>,
    /// What each destination does (the winner, when a destination, is up to date).
    pub actions: Vec<(usize, Action)>,
    /// Bad manifests no action repairs: (mirror, problem).
    pub problems: Vec<(usize, String)>,
}

/// Decides a key from what every mirror holds (`held[i]` is mirror `i`'s, `roles[i]` its role).
pub(crate) fn plan(held: &[Held], roles: &[Role]) -> KeyPlan {
    let mut winner: Option<(usize, Version)> = None;
    for (i, manifest) in held.iter().enumerate() {
        if let (true, Some(manifest)) = (roles[i].source, manifest.valid()) {
            let version = Version::of(manifest);
            if winner.is_none_or(|(_, best)| version > best) {
                winner = Some((i, version));
            }
        }
    }
    let mut plan = KeyPlan {
        winner: winner.map(|(i, _)| i),
        ..KeyPlan::default()
    };
    for (i, manifest) in held.iter().enumerate() {
        if plan.winner == Some(i) {
            if roles[i].destination {
                plan.actions.push((i, Action::UpToDate));
            }
            continue;
        }
        if !(roles[i].source || roles[i].destination) {
            continue;
        }
        let action = match (winner, manifest) {
            (_, Held::Unreadable(problem)) if roles[i].destination && winner.is_some() => {
                Some(Action::Unknown(problem.clone()))
            }
            (Some(_), Held::Absent) if roles[i].destination => {
                Some(Action::Copy { replaces: None })
            }
            (Some(_), Held::Invalid(problem)) if roles[i].destination => Some(Action::Copy {
                replaces: Some(problem.clone()),
            }),
            (Some((_, best)), Held::Valid(manifest)) if roles[i].destination => {
                Some(match Version::of(manifest).cmp(&best) {
                    std::cmp::Ordering::Less => Action::Copy { replaces: None },
                    std::cmp::Ordering::Equal => Action::UpToDate,
                    std::cmp::Ordering::Greater => Action::Newer,
                })
            }
            (_, Held::Invalid(problem) | Held::Unreadable(problem)) => {
                plan.problems.push((i, problem.clone()));
                None
            }
            _ => None,
        };
        if let Some(action) = action {
            plan.actions.push((i, action));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ArtifactKey;

    const BOTH: Role = Role {
        source: true,
        destination: true,
    };
    const FROM: Role = Role {
        source: true,
        destination: false,
    };
    const TO: Role = Role {
        source: false,
        destination: true,
    };

    fn at(created_unix_ms: u64, content: &[u8]) -> Held {
        let key: ArtifactKey = "k".parse().unwrap();
        Held::Valid(Manifest {
            key,
            size: 0,
            checksum: Digest::blake3(content),
            created_unix_ms,
            chunks: Vec::new(),
            packs: Vec::new(),
        })
    }

    fn copy() -> Action {
        Action::Copy { replaces: None }
    }

    #[test]
    fn the_newest_manifest_goes_to_mirrors_without_it_or_with_an_older_one() {
        let held = [at(10, b"old"), at(20, b"new"), Held::Absent];
        let plan = plan(&held, &[BOTH; 3]);
        assert_eq!(plan.winner, Some(1));
        assert_eq!(
            plan.actions,
            vec![(0, copy()), (1, Action::UpToDate), (2, copy())]
        );
        assert!(plan.problems.is_empty());
    }

    #[test]
    fn a_destination_newer_than_every_source_is_kept() {
        let plan = plan(&[at(10, b"a"), at(20, b"b")], &[FROM, TO]);
        assert_eq!(plan.winner, Some(0));
        assert_eq!(plan.actions, vec![(1, Action::Newer)]);
    }

    #[test]
    fn a_tie_in_time_goes_to_the_larger_digest_and_the_same_version_is_left_alone() {
        let (a, b) = (b"a".as_slice(), b"b".as_slice());
        let larger = if Digest::sha256(a) > Digest::sha256(b) {
            0
        } else {
            1
        };
        let held = [at(10, a), at(10, b), at(10, a)];
        let plan = plan(&held, &[BOTH; 3]);
        assert_eq!(plan.winner, Some(larger));
        // Mirror 2 holds the same version as mirror 0.
        let expected_2 = if larger == 0 {
            Action::UpToDate
        } else {
            copy()
        };
        let mut expected = vec![(larger, Action::UpToDate), (1 - larger, copy())];
        expected.sort_by_key(|(m, _)| *m);
        expected.push((2, expected_2));
        assert_eq!(plan.actions, expected);
    }

    #[test]
    fn bad_manifests_are_never_chosen_and_are_replaced_where_a_good_one_exists() {
        let held = [
            Held::Invalid("chunk 0: bad".into()),
            at(5, b"x"),
            Held::Invalid("not json".into()),
        ];
        let plan = plan(&held, &[BOTH, BOTH, FROM]);
        assert_eq!(plan.winner, Some(1));
        let replace = Action::Copy {
            replaces: Some("chunk 0: bad".into()),
        };
        assert_eq!(plan.actions, vec![(0, replace), (1, Action::UpToDate)]);
        // Mirror 2 only gives: its bad manifest stays, and is reported.
        assert_eq!(plan.problems, vec![(2, "not json".into())]);
    }

    #[test]
    fn an_unreadable_destination_gets_nothing_and_without_a_winner_nothing_moves() {
        let held = [at(5, b"x"), Held::Unreadable("timed out".into())];
        let plan_1 = plan(&held, &[BOTH, BOTH]);
        assert_eq!(
            plan_1.actions,
            vec![
                (0, Action::UpToDate),
                (1, Action::Unknown("timed out".into()))
            ]
        );
        let held = [Held::Invalid("bad".into()), Held::Absent];
        let plan_2 = plan(&held, &[BOTH, BOTH]);
        assert_eq!(plan_2.winner, None);
        assert!(plan_2.actions.is_empty());
        assert_eq!(plan_2.problems, vec![(0, "bad".into())]);
    }

    #[test]
    fn a_mirror_outside_the_sync_is_not_touched() {
        let outside = plan(&[at(5, b"x"), Held::Absent], &[FROM, Role::default()]);
        assert!(outside.actions.is_empty());
        // And a source alone is not a destination.
        let sources = plan(&[at(5, b"x"), Held::Absent], &[FROM, FROM]);
        assert!(sources.actions.is_empty());
    }
}
