//! Reading `checksums.txt` as PocketBase publishes it with every release:
//! one `<sha256 hex>  <file name>` line per asset (the `sha256sum` format,
//! where a `*` before the name marks binary mode).

/// Every well-formed `(file name, lowercase sha256)` pair in `text`.
/// Malformed lines are skipped rather than failing the whole file: only the
/// line for the asset being installed matters, and its absence is an error
/// of its own.
pub(crate) fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (hash, rest) = line.split_once(char::is_whitespace)?;
            let name = rest.trim_start().trim_start_matches('*').trim();
            let hash = normalize_sha256(hash)?;
            (!name.is_empty()).then(|| (name.to_string(), hash))
        })
        .collect()
}

/// The sha256 listed for `file`, if any.
pub(crate) fn find(text: &str, file: &str) -> Option<String> {
    parse(text)
        .into_iter()
        .find(|(name, _)| name == file)
        .map(|(_, hash)| hash)
}

/// A sha256 in lowercase hex, or `None` if `raw` is not 64 hex digits.
pub(crate) fn normalize_sha256(raw: &str) -> Option<String> {
    (raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| raw.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn parses_sha256sum_lines() {
        let text = "\
0c3a7bbd1d56e5dc1d8ba6a6ff02e6a8b61f8d8de4b0e6e5b0d4f11fa5b2b1e0  pocketbase_0.28.4_darwin_amd64.zip
5E3C7A4AF14A1C9A5D6A3A8D6F4F6D1C9E9D7F3B4F5B7C9A2A3B4C5D6E7F8091 *pocketbase_0.28.4_linux_amd64.zip
not-a-hash  pocketbase_0.28.4_linux_arm64.zip

deadbeef  short.zip
1111111111111111111111111111111111111111111111111111111111111111
2222222222222222222222222222222222222222222222222222222222222222\tpocketbase_0.28.4_windows_amd64.zip
";
        let parsed = parse(text)
            .into_iter()
            .map(|(n, h)| format!("{n} {h}"))
            .collect::<Vec<_>>()
            .join("\n");
        expect![[r#"
            pocketbase_0.28.4_darwin_amd64.zip 0c3a7bbd1d56e5dc1d8ba6a6ff02e6a8b61f8d8de4b0e6e5b0d4f11fa5b2b1e0
            pocketbase_0.28.4_linux_amd64.zip 5e3c7a4af14a1c9a5d6a3a8d6f4f6d1c9e9d7f3b4f5b7c9a2a3b4c5d6e7f8091
            pocketbase_0.28.4_windows_amd64.zip 2222222222222222222222222222222222222222222222222222222222222222"#]]
        .assert_eq(&parsed);
        expect![[r#"Some("5e3c7a4af14a1c9a5d6a3a8d6f4f6d1c9e9d7f3b4f5b7c9a2a3b4c5d6e7f8091")"#]]
            .assert_eq(&format!(
                "{:?}",
                find(text, "pocketbase_0.28.4_linux_amd64.zip")
            ));
        assert_eq!(find(text, "pocketbase_0.28.4_linux_arm64.zip"), None);
        assert_eq!(find(text, "linux_amd64.zip"), None);
    }
}
