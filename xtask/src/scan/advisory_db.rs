//! Where the RustSec advisory database comes from and how old it is: a directory given with
//! `--rustsec-db` (or `MULTUS_RUSTSEC_DB`) is used as it is (an offline snapshot); otherwise the
//! database is fetched with git into cargo-audit's location (`$CARGO_HOME/advisory-db`), and when
//! that fails (offline) the last fetched copy or the snapshot beside the repository
//! (`../shared/data/rustsec-advisory-db`) stands in, saying so. Its version is the git commit and
//! commit date, or a snapshot's `SNAPSHOT.md`, or at least the newest advisory's date; a publishing
//! release refuses a database older than `--max-rustsec-db-age` days.
//!
//! Locating and dating are plain functions over what git and the directory say; `git` runs here only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

/// The public database, as cargo-audit fetches it.
pub const DEFAULT_URL: &str = "https://github.com/rustsec/advisory-db.git";
/// How long a fetch may take before it is abandoned.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// What a publishing release accepts unless told otherwise (days).
pub const DEFAULT_MAX_AGE_DAYS: u32 = 30;

/// How the database was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `--rustsec-db` or `MULTUS_RUSTSEC_DB`.
    Given,
    /// Fetched (cloned or updated) from the URL just now.
    Fetched,
    /// The fetch failed; the last fetched copy is used.
    StaleCopy,
    /// The fetch failed; the snapshot beside the repository is used.
    Snapshot,
}

/// The database's identity, as recorded in the gate's report and `release.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbVersion {
    pub path: String,
    pub origin: Origin,
    pub commit: Option<String>,
    /// `YYYY-MM-DD`.
    pub date: Option<String>,
    /// Where the date comes from: `git commit`, `SNAPSHOT.md` or `newest advisory`.
    pub date_from: String,
}

/// A located database directory, with what happened on the way.
#[derive(Debug, Clone)]
pub struct Located {
    pub dir: PathBuf,
    pub origin: Origin,
    /// Why a fetch did not happen or failed, when it matters.
    pub note: Option<String>,
}

/// cargo-audit's default location: `$CARGO_HOME/advisory-db` (`~/.cargo/advisory-db`).
pub fn default_dir() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cargo")))?;
    Some(cargo_home.join("advisory-db"))
}

/// The snapshot beside the repository (`../shared/data/rustsec-advisory-db`), when it is there.
pub fn shared_snapshot() -> Option<PathBuf> {
    let root = crate::project::root();
    let dir = root.parent().unwrap_or(&root).join("shared/data/rustsec-advisory-db");
    dir.join("crates").is_dir().then_some(dir)
}

/// The URL to fetch from (`MULTUS_RUSTSEC_DB_URL`, else the public database).
pub fn url() -> String {
    std::env::var("MULTUS_RUSTSEC_DB_URL").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_URL.into())
}

/// Finds the database: the given directory, else a fresh fetch into `fetch_dir`, else the last
/// fetched copy, else the shared snapshot; when none is there, an error that says how to get one.
pub fn locate(
    given: Option<&Path>,
    url: &str,
    fetch_dir: Option<&Path>,
    snapshot: Option<&Path>,
) -> anyhow::Result<Located> {
    if let Some(dir) = given {
        return Ok(Located { dir: dir.to_path_buf(), origin: Origin::Given, note: None });
    }
    let Some(fetch_dir) = fetch_dir else {
        bail!("no RustSec advisory database: neither CARGO_HOME nor HOME is set; pass --rustsec-db DIR");
    };
    let why = match fetch(url, fetch_dir) {
        Ok(()) => return Ok(Located { dir: fetch_dir.to_path_buf(), origin: Origin::Fetched, note: None }),
        Err(e) => format!("fetching {url} into {} failed: {e:#}", fetch_dir.display()),
    };
    if fetch_dir.join("crates").is_dir() {
        return Ok(Located { dir: fetch_dir.to_path_buf(), origin: Origin::StaleCopy, note: Some(why) });
    }
    if let Some(s) = snapshot.filter(|s| s.join("crates").is_dir()) {
        return Ok(Located { dir: s.to_path_buf(), origin: Origin::Snapshot, note: Some(why) });
    }
    bail!(
        "no RustSec advisory database: {why}. Offline, pass --rustsec-db DIR (or set MULTUS_RUSTSEC_DB) with a \
         checkout or snapshot of {DEFAULT_URL} (copy one from a machine that has it: `git clone {DEFAULT_URL}`)"
    )
}

/// Clones the database into `dir`, or updates the clone there to the remote's newest commit
/// (shallow: only the tree of the newest commit is needed).
pub fn fetch(url: &str, dir: &Path) -> anyhow::Result<()> {
    let dir_s = dir.to_str().with_context(|| format!("{}: not UTF-8", dir.display()))?;
    if dir.join(".git").exists() {
        git(&["-C", dir_s, "fetch", "--quiet", "--depth", "1", url, "HEAD"])?;
        git(&["-C", dir_s, "reset", "--quiet", "--hard", "FETCH_HEAD"])?;
        return Ok(());
    }
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not a git checkout: not touching it", dir.display());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // Clone beside the final place and rename, so an interrupted clone leaves no half database.
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let tmp_s = tmp.to_str().context("not UTF-8")?;
    let _ = std::fs::remove_dir_all(&tmp);
    let r = git(&["clone", "--quiet", "--depth", "1", url, tmp_s]).and_then(|()| {
        if dir.exists() {
            std::fs::remove_dir(dir).with_context(|| format!("removing the empty {}", dir.display()))?;
        }
        std::fs::rename(&tmp, dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))
    });
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

/// Runs git without a terminal prompt, bounded in time; its stderr's last line becomes the error.
fn git(args: &[&str]) -> anyhow::Result<()> {
    let mut child = Command::new("git")
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running git")?;
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            use std::io::Read as _;
            let _ = e.by_ref().take(64 * 1024).read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > FETCH_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("git {} took longer than {} s", args.join(" "), FETCH_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = reader.join().unwrap_or_default();
    if !status.success() {
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        bail!("git {} failed ({status}): {}", args.first().copied().unwrap_or(""), last.trim());
    }
    Ok(())
}

fn git_read(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).stdin(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The first 40-hex word of a text (a snapshot's commit).
pub fn first_commit(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() == 40 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(String::from)
}

/// The first `YYYY-MM-DD` of a text.
pub fn first_date(text: &str) -> Option<String> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(9)).map(|i| &text[i..i + 10]).find(|w| days(w).is_some()).map(String::from)
}

/// The version of the database at `located`: git's commit and date for a checkout (only its own
/// `.git`, never an enclosing repository's), `SNAPSHOT.md`'s for a snapshot, else the newest
/// advisory's date.
pub fn version(located: &Located, newest_advisory: Option<&str>) -> DbVersion {
    let dir = &located.dir;
    let (mut commit, mut date, mut date_from) = (None, None, "newest advisory");
    if dir.join(".git").exists() {
        commit = git_read(dir, &["rev-parse", "HEAD"]);
        date = git_read(dir, &["log", "-1", "--format=%cs"]).filter(|d| days(d).is_some());
        date_from = "git commit";
    } else if let Ok(text) = std::fs::read_to_string(dir.join("SNAPSHOT.md")) {
        commit = first_commit(&text);
        date = first_date(&text);
        date_from = "SNAPSHOT.md";
    }
    if date.is_none() {
        date = newest_advisory.map(String::from);
        date_from = "newest advisory";
    }
    DbVersion {
        path: dir.display().to_string(),
        origin: located.origin.clone(),
        commit,
        date,
        date_from: date_from.into(),
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
pub fn days(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| -> Option<i64> { s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())? };
    let (y, m, d) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Refuses (exit 5) a database older than `max_days` on `today`, or one whose date is unknown.
pub fn check_age(v: &DbVersion, today: &str, max_days: u32) -> anyhow::Result<()> {
    let what = match &v.commit {
        Some(c) => format!("{} (commit {c})", v.path),
        None => v.path.clone(),
    };
    let Some(date) = &v.date else {
        return Err(crate::outcome::refused(format!(
            "the RustSec advisory database at {what} has no date: a publishing release cannot tell how old it is"
        )));
    };
    let age = days(today).context("today's date")? - days(date).context("the database's date")?;
    if age > i64::from(max_days) {
        return Err(crate::outcome::refused(format!(
            "the RustSec advisory database at {what} is {age} days old ({date}, from the {}); a publishing \
             release accepts at most {max_days} days (--max-rustsec-db-age): fetch it again online, or point \
             --rustsec-db at a newer snapshot",
            v.date_from
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_DATE", "2026-11-30T12:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-11-30T12:00:00Z")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    /// A local git repository serving a copy of two advisories of the shared snapshot stands in
    /// for github.com/rustsec/advisory-db: a real `git clone`/`git fetch` over a `file://` URL.
    fn upstream(root: &Path) -> (PathBuf, String) {
        let snap = shared_snapshot().expect("the shared snapshot");
        let repo = root.join("upstream");
        let pkg = repo.join("crates/smallvec");
        std::fs::create_dir_all(&pkg).unwrap();
        for f in ["RUSTSEC-2021-0003.md", "RUSTSEC-2018-0003.md"] {
            std::fs::copy(snap.join("crates/smallvec").join(f), pkg.join(f)).unwrap();
        }
        sh(&repo, &["init", "--quiet", "-b", "main"]);
        sh(&repo, &["add", "."]);
        sh(&repo, &["commit", "--quiet", "-m", "two advisories"]);
        let url = format!("file://{}", repo.display());
        (repo, url)
    }

    #[test]
    fn fetch_clones_then_updates_and_the_version_is_the_commit() {
        let t = tempfile::tempdir().unwrap();
        let (repo, url) = upstream(t.path());
        let dest = t.path().join("cargo/advisory-db");
        let l = locate(None, &url, Some(&dest), None).unwrap();
        assert_eq!((l.origin.clone(), l.dir.clone()), (Origin::Fetched, dest.clone()));
        let db = super::super::rustsec::load(&dest).unwrap();
        assert_eq!(db.count, 2);
        let v = version(&l, db.newest.as_deref());
        let head = git_read(&repo, &["rev-parse", "HEAD"]).unwrap();
        assert_eq!(
            (v.commit.as_deref(), v.date.as_deref(), v.date_from.as_str()),
            (Some(&*head), Some("2026-11-30"), "git commit")
        );

        // A new advisory upstream arrives with the next fetch.
        std::fs::remove_file(repo.join("crates/smallvec/RUSTSEC-2018-0003.md")).unwrap();
        sh(&repo, &["commit", "--quiet", "-am", "one withdrawn"]);
        locate(None, &url, Some(&dest), None).unwrap();
        assert_eq!(super::super::rustsec::load(&dest).unwrap().count, 1);
        assert_eq!(version(&l, None).commit, git_read(&repo, &["rev-parse", "HEAD"]));
    }

    #[test]
    fn offline_falls_back_to_the_last_copy_then_the_snapshot_then_says_what_to_do() {
        let t = tempfile::tempdir().unwrap();
        let (_, url) = upstream(t.path());
        let gone = format!("file://{}/nowhere", t.path().display());
        let dest = t.path().join("advisory-db");
        // Nothing fetched yet, no snapshot: the message says how to get one.
        let e = locate(None, &gone, Some(&dest), None).unwrap_err().to_string();
        assert!(e.contains("--rustsec-db DIR") && e.contains("fetching file://"), "{e}");
        assert!(!dest.exists(), "a failed clone leaves nothing behind");
        // The snapshot stands in.
        let snap = shared_snapshot().unwrap();
        let l = locate(None, &gone, Some(&dest), Some(&snap)).unwrap();
        assert_eq!((l.origin.clone(), l.dir.clone()), (Origin::Snapshot, snap.clone()));
        assert!(l.note.as_deref().unwrap().contains("failed"));
        let v = version(&l, None);
        assert_eq!(v.date_from, "SNAPSHOT.md");
        assert_eq!(v.commit.as_deref(), Some("bf5c0d245a92671908518d7e765914d437954ed6"));
        assert_eq!(v.date.as_deref(), Some("2026-08-21"));
        // Once fetched, the last copy wins over the snapshot.
        locate(None, &url, Some(&dest), None).unwrap();
        let l = locate(None, &gone, Some(&dest), Some(&snap)).unwrap();
        assert_eq!(l.origin, Origin::StaleCopy);
        // A given directory is taken as it is, without fetching.
        let l = locate(Some(&snap), &gone, Some(&dest), None).unwrap();
        assert_eq!(l.origin, Origin::Given);
        // A non-git directory in the way is left alone.
        let other = t.path().join("other");
        std::fs::create_dir_all(other.join("x")).unwrap();
        assert!(fetch(&url, &other).unwrap_err().to_string().contains("not a git checkout"));
    }

    #[test]
    fn dates_and_the_age_refusal() {
        assert_eq!(days("1970-01-01"), Some(0));
        assert_eq!(days("2000-03-01"), Some(11_017));
        assert_eq!(days("2026-12-05").unwrap() - days("2026-08-21").unwrap(), 106);
        assert_eq!(days("2026-13-01"), None);
        assert_eq!(first_date("commit x of 2026-08-21: the"), Some("2026-08-21".into()));
        let v = DbVersion {
            path: "db".into(),
            origin: Origin::Given,
            commit: Some("c".into()),
            date: Some("2026-08-21".into()),
            date_from: "SNAPSHOT.md".into(),
        };
        check_age(&v, "2026-09-20", 30).unwrap();
        let e = check_age(&v, "2026-09-21", 30).unwrap_err();
        assert_eq!(crate::outcome::exit_code(&e), 5);
        assert!(e.to_string().contains("31 days old"), "{e}");
        let undated = DbVersion { date: None, ..v };
        assert_eq!(crate::outcome::exit_code(&check_age(&undated, "2026-09-21", 30).unwrap_err()), 5);
    }
}
