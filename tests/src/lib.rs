//! Cross-crate end-to-end test helpers.
