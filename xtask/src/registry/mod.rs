//! The OCI distribution API client (distribution-spec v1.1.1, push side): existence checks,
//! cross-repository mounts with fallback, monolithic (POST then PUT) and chunked (PATCH) blob
//! uploads, manifest and tag pushes; retries with backoff and jitter on transient failures,
//! restarts of lost upload sessions, Basic auth and the Bearer token flow.
//!
//! All HTTP goes through `http::Transport`, so everything here runs against a scripted fake in
//! the unit tests. Requests that are safe to repeat (HEAD, GET, upload POST, manifest PUT) are
//! retried as they are; a blob upload that fails is restarted as a whole new session, after a
//! HEAD has checked that the blob did not land in the meantime.

pub mod access;
pub mod auth;
pub mod dockerconfig;
pub mod http;
pub mod retry;

use std::time::Duration;

use anyhow::{Context, bail};

use auth::{Challenge, Creds};
use http::{Response, Transport};
use retry::{Policy, Rng};

/// `HOST[:PORT]/REPO` with the scheme it is reached by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: &'static str,
    /// `host[:port]` as given.
    pub host: String,
    pub repo: String,
}

impl Target {
    /// Parses `HOST[:PORT]/REPO`. Plain HTTP only with `insecure`, and only for a loopback host.
    pub fn parse(s: &str, insecure: bool) -> anyhow::Result<Target> {
        let (host, repo) = s.split_once('/').with_context(|| format!("registry {s:?}: want HOST[:PORT]/REPO"))?;
        if host.is_empty() || host.contains(['@', '?', '#']) || s.contains("://") {
            bail!("registry {s:?}: want HOST[:PORT]/REPO without a scheme");
        }
        check_repo(repo).with_context(|| format!("registry {s:?}"))?;
        if insecure && !is_loopback(host) {
            bail!("registry {s:?}: --insecure (plain HTTP) is allowed for loopback hosts only, not {host}");
        }
        Ok(Target { scheme: if insecure { "http" } else { "https" }, host: host.into(), repo: repo.into() })
    }

    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// `host/repo` as references print it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.repo)
    }
}

/// Repository names per the distribution spec: path components of
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
pub fn check_repo(repo: &str) -> anyhow::Result<()> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
                i += 1;
            }
            let sep = &c[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                return false;
            }
        }
        true
    };
    if repo.is_empty() || !repo.split('/').all(component_ok) {
        bail!("repository {repo:?} is not a valid name (lower-case alphanumerics separated by . _ __ - and /)");
    }
    Ok(())
}

/// `127.x.y.z`, `[::1]`, `localhost`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Counters for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub requests: u32,
    pub retries: u32,
    pub session_restarts: u32,
    /// Chunks re-sent from the offset the registry reported after a failed PATCH.
    pub chunk_resumes: u32,
    pub tokens: u32,
    pub bytes_uploaded: u64,
}

/// How a blob got to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Present,
    Mounted,
    Uploaded,
}

fn error_text(e: &SessionError) -> String {
    match e {
        SessionError::Restart(m) => m.clone(),
        SessionError::Fatal(e) => format!("{e:#}"),
    }
}

/// Why an upload session ended early.
enum SessionError {
    /// Start a new session (lost session, transient status, broken connection).
    Restart(String),
    Fatal(anyhow::Error),
}

pub struct Client<'t> {
    t: &'t dyn Transport,
    target: Target,
    creds: Option<Creds>,
    policy: Policy,
    sleep: Box<dyn Fn(Duration) + 't>,
    rng: Rng,
    authorization: Option<String>,
    scopes: Vec<String>,
    pub stats: Stats,
}

struct Req<'a> {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl<'t> Client<'t> {
    pub fn new(t: &'t dyn Transport, target: Target, creds: Option<Creds>, policy: Policy) -> Client<'t> {
        Client {
            t,
            target,
            creds,
            policy,
            sleep: Box::new(std::thread::sleep),
            rng: Rng::from_clock(),
            authorization: None,
            scopes: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Replaces sleeping and the jitter seed (tests).
    #[cfg(test)]
    pub fn with_clock(mut self, sleep: impl Fn(Duration) + 't, seed: u64) -> Self {
        self.sleep = Box::new(sleep);
        self.rng = Rng::new(seed);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.target.base(), self.target.repo)
    }

    /// Resolves an upload `Location` (absolute, or relative to the registry) verbatim.
    fn location(&self, resp: &Response, what: &str) -> Result<String, SessionError> {
        let loc = resp
            .header("Location")
            .ok_or_else(|| SessionError::Restart(format!("{what}: {} without a Location header", resp.status)))?;
        Ok(if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else if loc.starts_with('/') {
            format!("{}{loc}", self.target.base())
        } else {
            format!("{}/{loc}", self.target.base())
        })
    }

    fn wait(&mut self, retry: u32, retry_after: Option<&str>) {
        let d = self.policy.delay_after(retry, &mut self.rng, retry_after);
        (self.sleep)(d);
    }

    /// One logical request: authentication on 401 (once), and, when `retry`, repeats on
    /// transient statuses and connection errors with backoff. Returns the last response.
    fn send(&mut self, what: &str, req: Req, retry: bool) -> anyhow::Result<Response> {
        self.exchange(what, req, retry, true)
    }

    /// `send`, optionally without our credentials and 401 handling (for the token endpoint).
    fn exchange(&mut self, what: &str, req: Req, retry: bool, auth: bool) -> anyhow::Result<Response> {
        let mut tries = 0u32;
        let mut authenticated = false;
        loop {
            let mut headers = req.headers.clone();
            if let Some(a) = self.authorization.as_ref().filter(|_| auth) {
                headers.push(("Authorization".into(), a.clone()));
            }
            self.stats.requests += 1;
            let r = self.t.send(&http::Request { method: req.method, url: req.url.clone(), headers, body: req.body });
            tries += 1;
            let can_retry = retry && tries < self.policy.attempts;
            match r {
                Ok(resp) if auth && resp.status == 401 && !authenticated => {
                    authenticated = true;
                    tries -= 1;
                    self.authenticate(what, &resp)?;
                }
                Ok(resp) if can_retry && retry::transient(resp.status) => {
                    self.stats.retries += 1;
                    let ra = resp.header("Retry-After").map(String::from);
                    self.wait(tries - 1, ra.as_deref());
                }
                Ok(resp) => return Ok(resp),
                Err(e) if can_retry => {
                    self.stats.retries += 1;
                    eprintln!("  retry {what}: {e}");
                    self.wait(tries - 1, None);
                }
                Err(e) => bail!("{what}: {e}"),
            }
        }
    }

    /// Answers a 401: Basic with the credentials, or a token from the Bearer realm.
    fn authenticate(&mut self, what: &str, resp: &Response) -> anyhow::Result<()> {
        let challenges: Vec<Challenge> = resp.all("WWW-Authenticate").flat_map(auth::parse_challenges).collect();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service, scope } => Some((realm.clone(), service.clone(), scope.clone())),
            _ => None,
        });
        if let Some((realm, service, scope)) = bearer {
            if let Some(s) = &scope {
                auth::merge_scope(&mut self.scopes, s);
            }
            let plain = realm.starts_with("http://");
            let realm_host = realm.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or("");
            if !(realm.starts_with("https://") || plain && (self.target.scheme == "http" || is_loopback(realm_host))) {
                bail!("{what}: refusing token realm {realm:?} (plain HTTP to a non-loopback host)");
            }
            let url = auth::token_url(&realm, service.as_deref(), &self.scopes);
            let mut headers = vec![];
            if let Some(c) = &self.creds {
                headers.push(("Authorization".into(), auth::basic(c)));
            }
            self.stats.tokens += 1;
            let r = self.exchange(
                &format!("token for {what}"),
                Req { method: "GET", url, headers, body: &[] },
                true,
                false,
            )?;
            if r.status != 200 {
                bail!("{what}: the token endpoint {realm} answered {}: {}", r.status, r.text());
            }
            self.authorization = Some(format!("Bearer {}", auth::parse_token(&r.body)?));
            return Ok(());
        }
        if challenges.iter().any(|c| matches!(c, Challenge::Basic { .. })) {
            let c = self.creds.as_ref().with_context(|| {
                format!("{what}: the registry wants a user name and password (--username/--password)")
            })?;
            self.authorization = Some(auth::basic(c));
            return Ok(());
        }
        bail!("{what}: 401 without a challenge we support: {:?}", resp.header("WWW-Authenticate"))
    }

    fn status_error(what: &str, r: &Response) -> anyhow::Error {
        anyhow::anyhow!("{what}: {} {}", r.status, r.text())
    }

    /// `GET /v2/`: reachability and credentials, before anything is pushed.
    pub fn ping(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/v2/", self.target.base());
        let r = self.send("GET /v2/", Req { method: "GET", url, headers: vec![], body: &[] }, true)?;
        if r.status != 200 {
            return Err(Self::status_error(&format!("{}: GET /v2/", self.target.host), &r));
        }
        Ok(())
    }

    pub fn blob_exists(&mut self, digest: &str) -> anyhow::Result<bool> {
        let what = format!("HEAD blob {digest}");
        let r = self.send(
            &what,
            Req { method: "HEAD", url: self.url(&format!("blobs/{digest}")), headers: vec![], body: &[] },
            true,
        )?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(Self::status_error(&what, &r)),
        }
    }

    /// Pushes a blob unless it is there: HEAD, then a mount from each `mount_from` repository,
    /// then an upload (monolithic up to `chunk`, chunked above; `chunk` 0 = always monolithic),
    /// restarting lost sessions up to the retry policy's attempts.
    pub fn push_blob(
        &mut self,
        digest: &str,
        bytes: &[u8],
        mount_from: &[String],
        chunk: usize,
    ) -> anyhow::Result<BlobOutcome> {
        if self.blob_exists(digest)? {
            return Ok(BlobOutcome::Present);
        }
        let mut session: Option<String> = None;
        let own = self.target.repo.clone();
        for from in mount_from.iter().filter(|f| **f != own) {
            let what = format!("mount blob {digest} from {from}");
            let url = self.url(&format!("blobs/uploads/?mount={digest}&from={}", auth::query_escape(from)));
            let r =
                self.send(&what, Req { method: "POST", url, headers: vec![content_length_zero()], body: &[] }, true)?;
            match r.status {
                201 => {
                    if let Some(s) = session.take() {
                        self.cancel(&s);
                    }
                    return Ok(BlobOutcome::Mounted);
                }
                // Not mounted, but an upload session was opened: keep the first, try other sources.
                202 => match (&session, self.location(&r, &what)) {
                    (None, Ok(loc)) => session = Some(loc),
                    (Some(_), Ok(loc)) => self.cancel(&loc),
                    (_, Err(_)) => {}
                },
                // Registries refuse mounts in many ways (no access to the source, unsupported): upload.
                _ => eprintln!("  mount of {} from {from} refused ({}), uploading instead", short(digest), r.status),
            }
        }
        let mut last = String::new();
        for attempt in 0..self.policy.attempts {
            if attempt > 0 {
                self.stats.session_restarts += 1;
                eprintln!("  restarting the upload of {} ({last})", short(digest));
                self.wait(attempt - 1, None);
                if self.blob_exists(digest)? {
                    return Ok(BlobOutcome::Uploaded);
                }
            }
            match self.upload_session(session.take(), digest, bytes, chunk) {
                Ok(()) => return Ok(BlobOutcome::Uploaded),
                Err(SessionError::Restart(e)) => last = e,
                Err(SessionError::Fatal(e)) => return Err(e),
            }
        }
        bail!("blob {digest}: upload failed {} times, last: {last}", self.policy.attempts)
    }

    /// Where an upload session stands (`GET <location>` → 204 with `Range: 0-N`): the next offset
    /// to send and the session's current location; `None` when the session is gone.
    fn upload_status(&mut self, loc: &str, digest: &str) -> Option<(usize, String)> {
        let what = format!("upload status of {digest}");
        let r = self.send(&what, Req { method: "GET", url: loc.to_string(), headers: vec![], body: &[] }, true).ok()?;
        if r.status != 204 {
            return None;
        }
        let next = match r.header("Range") {
            Some(range) => range.rsplit('-').next()?.trim().parse::<usize>().ok()? + 1,
            None => 0,
        };
        Some((next, self.location(&r, &what).ok()?))
    }

    /// Cancels an upload session we will not use (best effort: it expires anyway).
    fn cancel(&mut self, location: &str) {
        let req = Req { method: "DELETE", url: location.to_string(), headers: vec![], body: &[] };
        let _ = self.send("cancel upload", req, false);
    }

    fn upload_session(
        &mut self,
        session: Option<String>,
        digest: &str,
        bytes: &[u8],
        chunk: usize,
    ) -> Result<(), SessionError> {
        let fatal = SessionError::Fatal;
        let mut min_chunk = 0usize;
        let mut loc = match session {
            Some(l) => l,
            None => {
                let what = format!("start upload of {digest}");
                let url = self.url("blobs/uploads/");
                let r = self
                    .send(&what, Req { method: "POST", url, headers: vec![content_length_zero()], body: &[] }, true)
                    .map_err(|e| SessionError::Restart(format!("{e:#}")))?;
                if r.status != 202 {
                    return Err(classify(&what, &r));
                }
                min_chunk = r.header("OCI-Chunk-Min-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
                self.location(&r, &what)?
            }
        };
        let octet = ("Content-Type".to_string(), "application/octet-stream".to_string());
        let put_body: &[u8] = if chunk == 0 || bytes.len() <= chunk {
            bytes
        } else {
            let size = chunk.max(min_chunk);
            let mut start = 0usize;
            let mut resumes = 0u32;
            while start < bytes.len() {
                let end = (start + size).min(bytes.len());
                let what = format!("PATCH {digest} bytes {start}-{}", end - 1);
                let headers = vec![octet.clone(), ("Content-Range".into(), format!("{start}-{}", end - 1))];
                let req = Req { method: "PATCH", url: loc.clone(), headers, body: &bytes[start..end] };
                let sent = self.send(&what, req, false);
                let failure = match &sent {
                    Err(e) => Some(SessionError::Restart(format!("{e:#}"))),
                    Ok(r) if r.status != 202 => Some(classify(&what, r)),
                    Ok(_) => None,
                };
                if let Some(err) = failure {
                    if matches!(err, SessionError::Fatal(_)) || resumes >= self.policy.attempts {
                        return Err(err);
                    }
                    // Ask the registry how far the session got and go on from there; a session it no
                    // longer knows (or one at an offset it disputes) is restarted by the caller.
                    resumes += 1;
                    match self.upload_status(&loc, digest) {
                        Some((next, new_loc)) if next <= bytes.len() => {
                            self.stats.chunk_resumes += 1;
                            eprintln!(
                                "  resuming the upload of {} at byte {next} ({})",
                                short(digest),
                                error_text(&err)
                            );
                            start = next;
                            loc = new_loc;
                            continue;
                        }
                        _ => return Err(err),
                    }
                }
                let r = sent.expect("checked above");
                self.stats.bytes_uploaded += (end - start) as u64;
                // The registry says how much it has; anything else than what we sent is a lost session.
                if let Some(range) = r.header("Range") {
                    let have = range.rsplit('-').next().and_then(|e| e.trim().parse::<usize>().ok());
                    if have != Some(end - 1) {
                        return Err(SessionError::Restart(format!("{what}: the registry has range {range}")));
                    }
                }
                loc = self.location(&r, &what)?;
                start = end;
            }
            &[]
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = format!("{loc}{sep}digest={}", auth::query_escape(digest));
        let what = format!("PUT blob {digest}");
        let req = Req { method: "PUT", url, headers: vec![octet], body: put_body };
        let r = self.send(&what, req, false).map_err(|e| SessionError::Restart(format!("{e:#}")))?;
        if r.status != 201 {
            return Err(classify(&what, &r));
        }
        self.stats.bytes_uploaded += put_body.len() as u64;
        if let Some(d) = r.header("Docker-Content-Digest").filter(|d| *d != digest) {
            return Err(fatal(anyhow::anyhow!("{what}: the registry stored {d}")));
        }
        Ok(())
    }

    /// The digest a manifest reference (tag or digest) resolves to, if it exists.
    pub fn manifest_digest(&mut self, reference: &str) -> anyhow::Result<Option<String>> {
        let what = format!("HEAD manifest {reference}");
        let headers = vec![accept()];
        let r = self.send(
            &what,
            Req { method: "HEAD", url: self.url(&format!("manifests/{reference}")), headers, body: &[] },
            true,
        )?;
        match r.status {
            200 => Ok(r.header("Docker-Content-Digest").map(String::from)),
            404 => Ok(None),
            _ => Err(Self::status_error(&what, &r)),
        }
    }

    /// PUTs manifest bytes under a reference (its digest, or a tag); the registry must store
    /// exactly these bytes (it answers with their digest).
    pub fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &str,
    ) -> anyhow::Result<()> {
        let what = format!("PUT manifest {reference}");
        let headers = vec![("Content-Type".into(), media_type.into())];
        let r = self.send(
            &what,
            Req { method: "PUT", url: self.url(&format!("manifests/{reference}")), headers, body: bytes },
            true,
        )?;
        if r.status != 201 {
            return Err(Self::status_error(&what, &r));
        }
        match r.header("Docker-Content-Digest") {
            Some(d) if d != digest => bail!("{what}: the registry stored {d}, we sent {digest}"),
            _ => Ok(()),
        }
    }

    /// GETs a manifest's bytes (with the OCI Accept types the Debian registry insists on).
    pub fn get_manifest(&mut self, reference: &str) -> anyhow::Result<(String, Vec<u8>)> {
        let what = format!("GET manifest {reference}");
        let r = self.send(
            &what,
            Req { method: "GET", url: self.url(&format!("manifests/{reference}")), headers: vec![accept()], body: &[] },
            true,
        )?;
        if r.status != 200 {
            return Err(Self::status_error(&what, &r));
        }
        Ok((r.header("Content-Type").unwrap_or_default().to_string(), r.body))
    }
}

impl Client<'_> {
    /// GETs a blob (following one redirect to storage, without our credentials) and checks its
    /// bytes against the digest.
    pub fn get_blob(&mut self, digest: &str) -> anyhow::Result<Vec<u8>> {
        let what = format!("GET blob {digest}");
        let url = self.url(&format!("blobs/{digest}"));
        let mut r = self.send(&what, Req { method: "GET", url, headers: vec![], body: &[] }, true)?;
        if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
            let loc = self.location(&r, &what).map_err(|_| anyhow::anyhow!("{what}: a redirect without a Location"))?;
            r = self.exchange(&what, Req { method: "GET", url: loc, headers: vec![], body: &[] }, true, false)?;
        }
        if r.status != 200 {
            return Err(Self::status_error(&what, &r));
        }
        let actual = crate::image::oci::sha256_digest(&r.body);
        if actual != digest {
            return Err(crate::outcome::mismatch(format!("{what}: the registry sent bytes with digest {actual}")));
        }
        Ok(r.body)
    }
}

fn content_length_zero() -> (String, String) {
    ("Content-Length".into(), "0".into())
}

fn accept() -> (String, String) {
    ("Accept".into(), crate::image::oci::ACCEPT_MANIFESTS.into())
}

/// Upload answers: lost sessions (404 BLOB_UPLOAD_UNKNOWN, 416 range) and transient statuses
/// restart the session; anything else (400 DIGEST_INVALID, 401, 403, ...) is final.
fn classify(what: &str, r: &Response) -> SessionError {
    let msg = format!("{what}: {} {}", r.status, r.text());
    if matches!(r.status, 404 | 416) || retry::transient(r.status) {
        SessionError::Restart(msg)
    } else {
        SessionError::Fatal(anyhow::anyhow!(msg))
    }
}

pub fn short(digest: &str) -> &str {
    crate::image::short(digest)
}

#[cfg(test)]
mod tests;
