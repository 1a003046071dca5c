//! Privileged integration test helpers (being written).
