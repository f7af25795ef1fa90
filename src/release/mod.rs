//! PocketBase releases: resolve, download, verify and cache binaries.
