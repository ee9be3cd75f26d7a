//! `cargo xtask github-release`: publishes a release's `dist/` (see `dist`) as a GitHub Release
//! through the REST API, the way goreleaser does: the files are checked against `SHA256SUMS`
//! first (a tampered or incomplete directory is refused before any request), the release is
//! created as a draft, every asset is uploaded and its size checked, and only then is the draft
//! published, so a release never appears half-uploaded. A draft left by an interrupted run is
//! deleted and made again; a published release of the tag is never touched (refused, exit 5).
//!
//! The API calls go through `registry::http::Transport`; the body text is a plain function of
//! `release.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::registry::http::{Request, Transport};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The tag the release is made for (default $GITHUB_REF_NAME).
    #[arg(long)]
    pub tag: Option<String>,
    /// OWNER/NAME (default $GITHUB_REPOSITORY).
    #[arg(long)]
    pub repo: Option<String>,
    /// The assets (default target/dist, what `release` writes).
    #[arg(long)]
    pub dist: Option<PathBuf>,
    /// The REST API (default $GITHUB_API_URL, else https://api.github.com).
    #[arg(long)]
    pub api_url: Option<String>,
    /// Print the published release (URL and assets) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What was published.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub tag: String,
    pub html_url: String,
    pub assets: Vec<UploadedAsset>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedAsset {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub url: String,
}

/// The files of `dir`, sorted, checked against its `SHA256SUMS`: every file listed, every listed
/// file present with that digest (`SHA256SUMS` and its signature files themselves excepted).
pub fn checked_files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .with_context(|| format!("{}: no SHA256SUMS (run `cargo xtask release` first)", dir.display()))?;
    let mut listed = std::collections::BTreeMap::new();
    for line in sums.lines() {
        let (hex, name) = line.split_once("  ").with_context(|| format!("SHA256SUMS: malformed line {line:?}"))?;
        listed.insert(name.to_string(), hex.to_string());
    }
    let mut files = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).with_context(|| format!("reading {name}"))?;
        let unsummed = ["SHA256SUMS", "SHA256SUMS.sig", "SHA256SUMS.pem"].contains(&name.as_str());
        if !unsummed {
            match listed.remove(&name) {
                None => bail_mismatch(format!("{}/{name} is not in SHA256SUMS", dir.display()))?,
                Some(want) if want != format!("{:x}", sha2::Sha256::digest(&bytes)) => {
                    bail_mismatch(format!("{}/{name} does not match its SHA256SUMS line", dir.display()))?
                }
                Some(_) => {}
            }
        }
        files.push((name, bytes));
    }
    if let Some(name) = listed.keys().next() {
        bail_mismatch(format!("{}/{name} is in SHA256SUMS but missing", dir.display()))?;
    }
    if !files.iter().any(|(n, _)| n == "SHA256SUMS.sig") {
        bail_mismatch(format!("{}: SHA256SUMS is not signed (no SHA256SUMS.sig)", dir.display()))?;
    }
    Ok(files)
}

fn bail_mismatch(m: String) -> anyhow::Result<()> {
    Err(crate::outcome::mismatch(m))
}

/// The release's description, from `release.json`: the images by digest and how to verify.
pub fn body(record: &Value) -> String {
    let mut s = format!("multus {}\n\n", record["version"].as_str().unwrap_or("?"));
    if let Some(images) = record["images"].as_array() {
        s.push_str("## Images\n\n");
        for i in images {
            let pinned =
                i["pinned"].as_str().map(String::from).unwrap_or_else(|| i["digest"].as_str().unwrap_or("").into());
            let tags: Vec<&str> = i["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            s.push_str(&format!("- {}: `{pinned}` (tags {})\n", i["name"].as_str().unwrap_or("?"), tags.join(", ")));
        }
        s.push('\n');
    }
    s.push_str(
        "## Verify the downloads\n\n```\nsha256sum --check --ignore-missing SHA256SUMS\n\
         cosign verify-blob --key cosign.pub --signature SHA256SUMS.sig SHA256SUMS\n```\n",
    );
    s
}

fn api(
    t: &dyn Transport,
    method: &'static str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let bytes = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
    let mut headers = vec![
        ("Accept".to_string(), "application/vnd.github+json".to_string()),
        ("Authorization".to_string(), format!("Bearer {token}")),
        ("X-GitHub-Api-Version".to_string(), "2022-11-28".to_string()),
        ("User-Agent".to_string(), "multus-xtask".to_string()),
    ];
    if body.is_some() {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    let r = t
        .send(&Request { method, url: url.into(), headers, body: &bytes })
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let v = if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).unwrap_or(Value::Null) };
    Ok((r.status, v))
}

fn expect(status: u16, want: &[u16], what: &str, v: &Value) -> anyhow::Result<()> {
    if want.contains(&status) {
        return Ok(());
    }
    bail!("{what}: GitHub answered {status}: {}", v["message"].as_str().unwrap_or(&v.to_string()))
}

/// `?name=` value: RFC 3986 unreserved characters as they are, the rest percent-encoded.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Publishes `files` as the release of `tag` in `repo`.
pub fn publish(
    t: &dyn Transport,
    api_url: &str,
    repo: &str,
    tag: &str,
    token: &str,
    body_text: &str,
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<Published> {
    let base = format!("{}/repos/{repo}", api_url.trim_end_matches('/'));
    let (status, existing) = api(t, "GET", &format!("{base}/releases/tags/{}", query_escape(tag)), token, None)?;
    match status {
        404 => {}
        200 if existing["draft"] == true => {
            let id = existing["id"].as_u64().context("the draft release has no id")?;
            eprintln!("  deleting the draft release {id} an interrupted run left");
            let (s, v) = api(t, "DELETE", &format!("{base}/releases/{id}"), token, None)?;
            expect(s, &[204], "deleting the draft", &v)?;
        }
        200 => {
            return Err(crate::outcome::refused(format!(
                "{repo} already has a published release for {tag} ({}): not replacing it",
                existing["html_url"].as_str().unwrap_or("?")
            )));
        }
        _ => expect(status, &[200, 404], "looking up the release", &existing)?,
    }
    let create = json!({
        "tag_name": tag,
        "name": tag,
        "body": body_text,
        "draft": true,
        "prerelease": tag.contains('-'),
    });
    let (s, created) = api(t, "POST", &format!("{base}/releases"), token, Some(&create))?;
    expect(s, &[201], "creating the draft release", &created)?;
    let id = created["id"].as_u64().context("the created release has no id")?;
    let upload = created["upload_url"].as_str().context("the created release has no upload_url")?;
    let upload = upload.split('{').next().unwrap_or(upload).to_string();
    let mut assets = Vec::new();
    for (name, bytes) in files {
        let content_type = match name.rsplit('.').next() {
            Some("gz") => "application/gzip",
            Some("json") => "application/json",
            Some("yml" | "yaml") => "application/yaml",
            _ => "application/octet-stream",
        };
        let headers = vec![
            ("Accept".to_string(), "application/vnd.github+json".to_string()),
            ("Authorization".to_string(), format!("Bearer {token}")),
            ("X-GitHub-Api-Version".to_string(), "2022-11-28".to_string()),
            ("User-Agent".to_string(), "multus-xtask".to_string()),
            ("Content-Type".to_string(), content_type.to_string()),
        ];
        let url = format!("{upload}?name={}", query_escape(name));
        let r = t
            .send(&Request { method: "POST", url: url.clone(), headers, body: bytes })
            .map_err(|e| anyhow::anyhow!("uploading {name}: {e}"))?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        expect(r.status, &[201], &format!("uploading {name}"), &v)?;
        if v["size"].as_u64() != Some(bytes.len() as u64) {
            return Err(crate::outcome::mismatch(format!(
                "uploading {name}: GitHub stored {} bytes, we sent {}",
                v["size"],
                bytes.len()
            )));
        }
        eprintln!("  uploaded {name} ({} bytes)", bytes.len());
        assets.push(UploadedAsset {
            name: name.clone(),
            size: bytes.len() as u64,
            sha256: format!("{:x}", sha2::Sha256::digest(bytes)),
            url: v["browser_download_url"].as_str().unwrap_or_default().to_string(),
        });
    }
    let (s, done) = api(t, "PATCH", &format!("{base}/releases/{id}"), token, Some(&json!({"draft": false})))?;
    expect(s, &[200], "publishing the draft", &done)?;
    Ok(Published { tag: tag.into(), html_url: done["html_url"].as_str().unwrap_or_default().to_string(), assets })
}

fn env_or(flag: Option<String>, var: &str) -> Option<String> {
    flag.or_else(|| std::env::var(var).ok()).filter(|v| !v.is_empty())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = crate::project::root();
    let dir = args.dist.clone().unwrap_or_else(|| root.join("target/dist"));
    let tag = env_or(args.tag.clone(), "GITHUB_REF_NAME").context("--tag (or $GITHUB_REF_NAME) is needed")?;
    let repo = env_or(args.repo.clone(), "GITHUB_REPOSITORY").context("--repo (or $GITHUB_REPOSITORY) is needed")?;
    if repo.split('/').count() != 2 || repo.split('/').any(|p| p.is_empty()) {
        bail!("--repo {repo:?}: want OWNER/NAME");
    }
    let api_url = env_or(args.api_url.clone(), "GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
    eprintln!("==> check {} against SHA256SUMS", dir.display());
    let files = checked_files(&dir)?;
    let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty()).context("$GITHUB_TOKEN is not set")?;
    let record: Value = match files.iter().find(|(n, _)| n == "release.json") {
        Some((_, b)) => serde_json::from_slice(b).context("release.json")?,
        None => Value::Null,
    };
    eprintln!("==> GitHub release {tag} of {repo} ({} assets) via {api_url}", files.len());
    let transport = crate::registry::http::Ureq::new(None)?;
    let p = publish(&transport, &api_url, &repo, &tag, &token, &body(&record), &files)?;
    if args.json {
        print!("{}", crate::report::canonical_json(serde_json::to_value(&p)?));
    }
    eprintln!("summary: released {tag} with {} assets: {}", p.assets.len(), p.html_url);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::registry::http::Response;

    /// GitHub's REST API as far as a release goes, scripted: it answers like api.github.com
    /// (status codes and JSON fields of the documented responses) and records every request.
    struct FakeGitHub {
        existing: Option<Value>,
        log: Mutex<Vec<(String, String, Vec<u8>)>>,
    }

    impl Transport for FakeGitHub {
        fn send(&self, req: &Request) -> Result<Response, String> {
            assert!(req.headers.iter().any(|(k, v)| k == "Authorization" && v == "Bearer tok"));
            self.log.lock().unwrap().push((req.method.into(), req.url.clone(), req.body.to_vec()));
            let json =
                |status: u16, v: Value| Ok(Response { status, headers: vec![], body: serde_json::to_vec(&v).unwrap() });
            let path = req.url.strip_prefix("http://gh").unwrap();
            match (req.method, path) {
                ("GET", "/repos/o/r/releases/tags/v1.0.0") => match &self.existing {
                    Some(v) => json(200, v.clone()),
                    None => json(404, json!({"message": "Not Found"})),
                },
                ("DELETE", "/repos/o/r/releases/3") => Ok(Response { status: 204, ..Default::default() }),
                ("POST", "/repos/o/r/releases") => {
                    json(201, json!({"id": 7, "upload_url": "http://up/repos/o/r/releases/7/assets{?name,label}"}))
                }
                ("PATCH", "/repos/o/r/releases/7") => {
                    json(200, json!({"html_url": "http://gh/o/r/releases/tag/v1.0.0"}))
                }
                _ => json(404, json!({"message": format!("no route {} {}", req.method, req.url)})),
            }
        }
    }

    // Uploads go to another host (uploads.github.com): answered here too.
    impl FakeGitHub {
        fn new(existing: Option<Value>) -> FakeGitHub {
            FakeGitHub { existing, log: Mutex::new(vec![]) }
        }
    }

    struct Both(FakeGitHub);
    impl Transport for Both {
        fn send(&self, req: &Request) -> Result<Response, String> {
            if let Some(rest) = req.url.strip_prefix("http://up/repos/o/r/releases/7/assets?name=") {
                self.0.log.lock().unwrap().push(("UPLOAD".into(), rest.into(), req.body.to_vec()));
                let v =
                    json!({"name": rest, "size": req.body.len(), "browser_download_url": format!("http://dl/{rest}")});
                return Ok(Response { status: 201, headers: vec![], body: serde_json::to_vec(&v).unwrap() });
            }
            self.0.send(req)
        }
    }

    fn files() -> Vec<(String, Vec<u8>)> {
        vec![("a b.tar.gz".into(), b"tar".to_vec()), ("SHA256SUMS".into(), b"sums".to_vec())]
    }

    #[test]
    fn a_draft_is_created_filled_then_published() {
        let t = Both(FakeGitHub::new(None));
        let p = publish(&t, "http://gh", "o/r", "v1.0.0", "tok", "body", &files()).unwrap();
        assert_eq!(p.html_url, "http://gh/o/r/releases/tag/v1.0.0");
        assert_eq!(p.assets[0].url, "http://dl/a%20b.tar.gz");
        let log = t.0.log.lock().unwrap();
        let calls: Vec<(&str, &str)> = log.iter().map(|(m, u, _)| (m.as_str(), u.as_str())).collect();
        assert_eq!(
            calls,
            [
                ("GET", "http://gh/repos/o/r/releases/tags/v1.0.0"),
                ("POST", "http://gh/repos/o/r/releases"),
                ("UPLOAD", "a%20b.tar.gz"),
                ("UPLOAD", "SHA256SUMS"),
                ("PATCH", "http://gh/repos/o/r/releases/7"),
            ]
        );
        let created: Value = serde_json::from_slice(&log[1].2).unwrap();
        assert_eq!(
            created,
            json!({"tag_name": "v1.0.0", "name": "v1.0.0", "body": "body", "draft": true, "prerelease": false})
        );
        assert_eq!(log[2].2, b"tar");
        assert_eq!(serde_json::from_slice::<Value>(&log[4].2).unwrap(), json!({"draft": false}));
    }

    #[test]
    fn a_leftover_draft_is_replaced_and_a_published_release_refused() {
        let t = Both(FakeGitHub::new(Some(json!({"id": 3, "draft": true}))));
        publish(&t, "http://gh", "o/r", "v1.0.0", "tok", "b", &files()).unwrap();
        assert_eq!(t.0.log.lock().unwrap()[1].0, "DELETE");
        let t = Both(FakeGitHub::new(Some(json!({"id": 3, "draft": false, "html_url": "u"}))));
        let e = publish(&t, "http://gh", "o/r", "v1.0.0", "tok", "b", &files()).unwrap_err();
        assert_eq!(crate::outcome::exit_code(&e), 5, "{e}");
        assert_eq!(t.0.log.lock().unwrap().len(), 1, "nothing after the lookup");
    }

    #[test]
    fn the_directory_must_match_its_checksums_and_be_signed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.json"), "{}").unwrap();
        let sum = format!("{:x}", sha2::Sha256::digest(b"{}"));
        std::fs::write(d.path().join("SHA256SUMS"), format!("{sum}  x.json\n")).unwrap();
        let e = checked_files(d.path()).unwrap_err();
        assert!(e.to_string().contains("not signed"), "{e}");
        std::fs::write(d.path().join("SHA256SUMS.sig"), "c2ln").unwrap();
        assert_eq!(checked_files(d.path()).unwrap().len(), 3);
        std::fs::write(d.path().join("x.json"), "{ }").unwrap();
        let e = checked_files(d.path()).unwrap_err();
        assert_eq!(crate::outcome::exit_code(&e), 4, "{e}");
        std::fs::write(d.path().join("x.json"), "{}").unwrap();
        std::fs::write(d.path().join("extra"), "").unwrap();
        assert!(checked_files(d.path()).unwrap_err().to_string().contains("extra is not in SHA256SUMS"));
    }

    #[test]
    fn the_body_names_the_images_by_digest() {
        let r = json!({"version": "1.0.0", "images": [{"name": "thick", "digest": "sha256:aa", "pinned": "r/m@sha256:aa", "tags": ["thick-1.0.0", "v1.0.0-thick"]}]});
        let b = body(&r);
        assert!(b.contains("- thick: `r/m@sha256:aa` (tags thick-1.0.0, v1.0.0-thick)"), "{b}");
        assert!(b.contains("cosign verify-blob --key cosign.pub --signature SHA256SUMS.sig SHA256SUMS"));
    }
}
