//! The integration tests: one binary, one module per area, shared helpers in
//! `support`. They run real PocketBase binaries fetched by
//! `scripts/fetch-test-deps`.

mod support;

mod compat;
mod daemon;
mod release;
mod supervisor;
mod validation;
