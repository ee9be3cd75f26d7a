//! Registry credentials the way docker, crane, ko and cosign find them, for a registry host that
//! no `--username/--password` or `MULTUS_REGISTRY_*` names: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`; what `docker login` and docker/login-action write). For the host:
//! `credHelpers[host]`, else `credsStore`, runs `docker-credential-<name> get` with the host on
//! stdin (a helper's "not found" is no credentials); else `auths[host]` (`auth` = base64
//! `user:password`, or `username`/`password`), its keys compared as docker does (a scheme and a
//! path are ignored). No file, no entry: anonymous. The parsing and matching are plain functions;
//! running a helper goes through [`Helper`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::Value;

use super::auth::Creds;

/// Where the config file is: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("config.json"));
    }
    env("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".docker/config.json"))
}

/// `https://host:port/v1/` → `host:port` (docker's `ConvertToHostname`).
fn hostname(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Where a host's credentials come from, by the file's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `docker-credential-<name>`.
    Helper(String),
    Stored(Creds),
    None,
}

/// The credential source the config document names for `host`.
pub fn source_for(config: &Value, host: &str, file: &Path) -> anyhow::Result<Source> {
    // A host listed with an empty helper opts out of `credsStore` and uses `auths` (docker's rule).
    match config["credHelpers"].get(host).and_then(Value::as_str) {
        Some("") => {}
        Some(h) => return Ok(Source::Helper(h.to_string())),
        None => {
            if let Some(s) = config["credsStore"].as_str().filter(|s| !s.is_empty()) {
                return Ok(Source::Helper(s.to_string()));
            }
        }
    }
    let Some(auths) = config["auths"].as_object() else { return Ok(Source::None) };
    let entry = auths.get(host).or_else(|| auths.iter().find(|(k, _)| hostname(k) == host).map(|(_, v)| v));
    let Some(entry) = entry else { return Ok(Source::None) };
    let what = || format!("{}: auths entry of {host}", file.display());
    if entry.get("identitytoken").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
        bail!("{}: identity tokens are not supported; use a password or a credential helper", what());
    }
    if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .with_context(|| format!("{}: `auth` is not base64", what()))?;
        let text = String::from_utf8(decoded).with_context(|| format!("{}: `auth` is not UTF-8", what()))?;
        let (username, password) =
            text.split_once(':').with_context(|| format!("{}: `auth` is not user:password", what()))?;
        return Ok(Source::Stored(Creds { username: username.into(), password: password.into() }));
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Source::Stored(Creds { username: u.into(), password: p.into() })),
        _ => Ok(Source::None),
    }
}

/// Runs a credential helper (the process edge, a fake in the unit tests).
pub trait Helper {
    /// `docker-credential-<name> get` with `host` on stdin: its stdout, or `None` for "not found".
    fn get(&self, name: &str, host: &str) -> anyhow::Result<Option<String>>;
}

/// The real helpers, from PATH, each given at most 30 s.
pub struct PathHelper;

impl Helper for PathHelper {
    fn get(&self, name: &str, host: &str) -> anyhow::Result<Option<String>> {
        use std::io::{Read as _, Write as _};
        use std::os::unix::process::CommandExt as _;
        let program = format!("docker-credential-{name}");
        let mut child = Command::new(&program)
            .arg("get")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running the credential helper {program} (named in the docker config)"))?;
        let pid = child.id() as i32;
        // Kills everything the helper started (gpg, pinentry, a shell's children) and reaps it.
        let kill = |child: &mut std::process::Child| {
            // SAFETY: signalling the process group of our own unreaped child.
            unsafe { libc_kill(-pid) };
            let _ = child.kill();
            let _ = child.wait();
        };
        let drain = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.by_ref().take(1 << 20).read_to_end(&mut v);
                v
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("piped")));
        let err = drain(Box::new(child.stderr.take().expect("piped")));
        let written = child.stdin.take().expect("piped").write_all(host.as_bytes());
        if let Err(e) = written {
            kill(&mut child);
            return Err(e).with_context(|| format!("{program} get: writing the host"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if std::time::Instant::now() > deadline {
                kill(&mut child);
                bail!("{program} get: no answer within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The group is gone too, so nothing keeps the pipes open past this point.
        // SAFETY: as above; the leader is reaped, the group id is not reused while members live.
        unsafe { libc_kill(-pid) };
        let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        if status.success() {
            return Ok(Some(stdout));
        }
        // docker-credential-helpers report a missing entry on stdout with exactly this text.
        if stdout.trim() == "credentials not found in native keychain" {
            return Ok(None);
        }
        bail!("{program} get {host}: {status} {}", stderr.trim())
    }
}

/// `kill(pid, SIGKILL)` without a libc dependency in xtask.
unsafe fn libc_kill(pid: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: the caller names a process (group) of its own; SIGKILL is 9 on Linux.
    unsafe {
        kill(pid, 9);
    }
}

/// The helper's answer (`{"ServerURL","Username","Secret"}`) as credentials.
pub fn parse_helper_answer(name: &str, answer: &str) -> anyhow::Result<Creds> {
    let v: Value = serde_json::from_str(answer)
        .with_context(|| format!("docker-credential-{name} printed no JSON credentials"))?;
    let username = v["Username"].as_str().unwrap_or_default();
    let secret = v["Secret"].as_str().unwrap_or_default();
    if username == "<token>" {
        bail!("docker-credential-{name} returned an identity token; only user name and password are supported");
    }
    if username.is_empty() || secret.is_empty() {
        bail!("docker-credential-{name} returned no Username/Secret");
    }
    Ok(Creds { username: username.into(), password: secret.into() })
}

/// A helper name from the config file becomes part of a program name looked up on PATH: only
/// docker's own kind of names (`pass`, `ecr-login`, `secretservice`), never a path.
fn check_helper_name(name: &str, file: &Path) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if !ok {
        bail!(
            "{}: credential helper name {name:?} is not a plain name (letters, digits, '-', '_', '.')",
            file.display()
        );
    }
    Ok(())
}

/// Credentials for `host` from the docker config at `path` (a missing file is anonymous).
pub fn credentials(path: &Path, host: &str, helper: &dyn Helper) -> anyhow::Result<Option<Creds>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    match source_for(&config, host, path)? {
        Source::None => Ok(None),
        Source::Stored(c) => Ok(Some(c)),
        Source::Helper(name) => match check_helper_name(&name, path).and_then(|()| helper.get(&name, host))? {
            None => Ok(None),
            Some(answer) => parse_helper_answer(&name, &answer).map(Some),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn creds(u: &str, p: &str) -> Creds {
        Creds { username: u.into(), password: p.into() }
    }

    #[test]
    fn the_file_is_found_as_docker_finds_it() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            "DOCKER_CONFIG" => Some("/etc/dc".to_string()),
            _ => None,
        };
        assert_eq!(config_path(&env), Some(PathBuf::from("/etc/dc/config.json")));
        let home_only = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(config_path(&home_only), Some(PathBuf::from("/home/u/.docker/config.json")));
    }

    #[test]
    fn helpers_first_then_the_store_then_auths() {
        let file = Path::new("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("tester:se:cret");
        let c = json!({"auths": {"https://reg.example:5000/v1/": {"auth": auth}, "other.example": {"username": "a", "password": "b"}},
                       "credHelpers": {"helped.example": "pass"}});
        assert_eq!(source_for(&c, "reg.example:5000", file).unwrap(), Source::Stored(creds("tester", "se:cret")));
        assert_eq!(source_for(&c, "other.example", file).unwrap(), Source::Stored(creds("a", "b")));
        assert_eq!(source_for(&c, "helped.example", file).unwrap(), Source::Helper("pass".into()));
        assert_eq!(source_for(&c, "nowhere.example", file).unwrap(), Source::None);
        let store = json!({"auths": {"reg.example": {}, "own.example": {"auth": base64::engine::general_purpose::STANDARD.encode("o:p")}},
                           "credsStore": "secretservice", "credHelpers": {"own.example": ""}});
        assert_eq!(source_for(&store, "reg.example", file).unwrap(), Source::Helper("secretservice".into()));
        assert_eq!(source_for(&store, "own.example", file).unwrap(), Source::Stored(creds("o", "p")), "opted out");
        let bad = json!({"auths": {"r": {"auth": "!!"}}});
        assert!(source_for(&bad, "r", file).unwrap_err().to_string().contains("not base64"));
        let token = json!({"auths": {"r": {"identitytoken": "x"}}});
        assert!(source_for(&token, "r", file).unwrap_err().to_string().contains("identity tokens"));
    }

    struct Fake(Option<&'static str>);
    impl Helper for Fake {
        fn get(&self, name: &str, host: &str) -> anyhow::Result<Option<String>> {
            assert_eq!((name, host), ("test", "reg.example"));
            Ok(self.0.map(String::from))
        }
    }

    #[test]
    fn helper_answers() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.json");
        assert_eq!(credentials(&path, "reg.example", &Fake(None)).unwrap(), None, "no file: anonymous");
        std::fs::write(&path, r#"{"credHelpers": {"reg.example": "test"}}"#).unwrap();
        let answer = r#"{"ServerURL":"reg.example","Username":"u","Secret":"s"}"#;
        assert_eq!(credentials(&path, "reg.example", &Fake(Some(answer))).unwrap(), Some(creds("u", "s")));
        assert_eq!(credentials(&path, "reg.example", &Fake(None)).unwrap(), None, "not found: anonymous");
        let token = r#"{"Username":"<token>","Secret":"t"}"#;
        assert!(credentials(&path, "reg.example", &Fake(Some(token))).is_err());
        // A name that would make the program name a path is refused before anything runs.
        for bad in ["../../bin/sh", "x/y", ".hidden", ""] {
            std::fs::write(&path, serde_json::json!({"credsStore": bad}).to_string()).unwrap();
            let got = credentials(&path, "reg.example", &Fake(Some(answer)));
            assert!(
                bad.is_empty() || got.as_ref().is_err_and(|e| e.to_string().contains("not a plain name")),
                "{bad}: {got:?}"
            );
        }
    }
}
