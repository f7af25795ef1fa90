//! Placeholder for the caddy router.
