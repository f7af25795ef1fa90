//! PocketBase versions: parsing, `latest`, nearest matches (pure).
