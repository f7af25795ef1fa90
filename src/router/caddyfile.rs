//! Placeholder for the caddyfile router.
