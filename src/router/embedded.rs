//! Placeholder for the embedded router.
