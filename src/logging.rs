//! multus's log (every part logs through it; it depends on nothing of the crate): `RFC3339 [level] message` lines to stderr and/or `logFile`, with upstream's levels
//! (panic < error < verbose < debug; default panic, i.e. quiet) and lumberjack-style rotation
//! (`maxSize` MB, `maxBackups`, `maxAge` days, `compress`). Never writes to stdout: stdout carries
//! only the CNI result.

//!
//! The libc-free shim (`shim/`) compiles this file too, without std (`multus_nostd`): it keeps the
//! levels and the time format and brings its own writer and rotation over system calls.

#[cfg(not(multus_nostd))]
use std::io::Write;
#[cfg(not(multus_nostd))]
use std::path::{Path, PathBuf};
#[cfg(not(multus_nostd))]
use std::sync::{Mutex, OnceLock};
#[cfg(not(multus_nostd))]
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::prelude::*;

/// Log rotation (upstream's lumberjack options).
#[derive(Debug, Clone, PartialEq)]
pub struct LogOptions {
    pub max_age_days: u64,
    pub max_size_mb: u64,
    pub max_backups: usize,
    pub compress: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { max_age_days: 5, max_size_mb: 100, max_backups: 5, compress: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Panic,
    Error,
    Verbose,
    Debug,
}

impl Level {
    pub fn parse(s: &str) -> Level {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "verbose" => Level::Verbose,
            "error" => Level::Error,
            _ => Level::Panic,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Panic => "panic",
            Level::Error => "error",
            Level::Verbose => "verbose",
            Level::Debug => "debug",
        }
    }
}

#[cfg(not(multus_nostd))]
struct Logger {
    level: Level,
    to_stderr: bool,
    file: Option<(PathBuf, LogOptions)>,
    lock: Mutex<()>,
}

#[cfg(not(multus_nostd))]
static LOGGER: OnceLock<Logger> = OnceLock::new();

#[cfg(not(multus_nostd))]
/// Configures the log from its settings (the daemon's config, the shim's few keys); the first
/// call wins. An empty `file` means no log file.
pub fn init_with(file: &str, level: &str, to_stderr: bool, options: &LogOptions) {
    let file = (!file.is_empty()).then(|| (PathBuf::from(file), options.clone()));
    let _ = LOGGER.set(Logger { level: Level::parse(level), to_stderr, file, lock: Mutex::new(()) });
}

#[cfg(not(multus_nostd))]
/// Before `init` (e.g. the config did not parse), errors still reach stderr.
fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger { level: Level::Error, to_stderr: true, file: None, lock: Mutex::new(()) })
}

#[cfg(not(multus_nostd))]
pub fn log(level: Level, msg: &str) {
    let l = logger();
    if level > l.level {
        return;
    }
    let line = format!("{} [{}] {}\n", rfc3339(SystemTime::now()), level.name(), msg);
    let _guard = l.lock.lock();
    if l.to_stderr {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    if let Some((path, opts)) = &l.file {
        let _ = write_rotating(path, opts, line.as_bytes());
    }
}

#[cfg(not(multus_nostd))]
pub fn error(msg: &str) {
    log(Level::Error, msg)
}

#[cfg(not(multus_nostd))]
pub fn verbose(msg: &str) {
    log(Level::Verbose, msg)
}

#[cfg(not(multus_nostd))]
pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}

/// A time as `2006-01-02T15:04:05Z` (UTC).
#[cfg(not(multus_nostd))]
pub fn rfc3339(t: SystemTime) -> String {
    rfc3339_secs(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
}

/// Seconds since the epoch as `2006-01-02T15:04:05Z` (UTC).
pub fn rfc3339_secs(s: u64) -> String {
    let (date, secs) = civil(s);
    format!("{date}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// (`YYYY-MM-DD`, seconds into the day) in UTC of seconds since the epoch.
pub fn civil(s: u64) -> (String, u64) {
    let (y, m, d) = civil_from_days((s / 86400) as i64);
    (format!("{y:04}-{m:02}-{d:02}"), s % 86400)
}

/// (year, month, day) of a day number since 1970-01-01 (Howard Hinnant's days-to-civil).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(not(multus_nostd))]
fn write_rotating(path: &Path, opts: &LogOptions, line: &[u8]) -> std::io::Result<()> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if opts.max_size_mb > 0 && size > 0 && size + line.len() as u64 > opts.max_size_mb * 1024 * 1024 {
        rotate(path, opts)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(line)
}

#[cfg(not(multus_nostd))]
/// Moves the log aside as `<stem>-<time>.<ext>` (gzipped when asked) and prunes old backups.
fn rotate(path: &Path, opts: &LogOptions) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("multus");
    let ext = path.extension().and_then(|s| s.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
    let now = SystemTime::now();
    let (date, secs) = civil(now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
    let millis = now.duration_since(UNIX_EPOCH).unwrap_or_default().subsec_millis();
    let stamp = format!("{date}T{:02}-{:02}-{:02}.{millis:03}", secs / 3600, secs / 60 % 60, secs % 60);
    let backup = dir.join(format!("{stem}-{stamp}{ext}"));
    std::fs::rename(path, &backup)?;
    if opts.compress {
        let data = std::fs::read(&backup)?;
        let gz = dir.join(format!("{stem}-{stamp}{ext}.gz"));
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz)?, flate2::Compression::default());
        enc.write_all(&data)?;
        enc.finish()?;
        std::fs::remove_file(&backup)?;
    }
    let prefix = format!("{stem}-");
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with(&prefix) && (n.ends_with(&ext) || n.ends_with(&format!("{ext}.gz"))) && p != path
        })
        .collect();
    backups.sort();
    let max_age = Duration::from_secs(opts.max_age_days * 86400);
    let too_old = |p: &Path| {
        opts.max_age_days > 0
            && std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|m| now.duration_since(m).unwrap_or_default() > max_age)
    };
    let excess = if opts.max_backups > 0 { backups.len().saturating_sub(opts.max_backups) } else { 0 };
    for (i, p) in backups.iter().enumerate() {
        if i < excess || too_old(p) {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

#[cfg(all(test, not(multus_nostd)))]
mod tests {
    use super::*;

    #[test]
    /// Expected values checked with GNU `date -u -d @SECONDS`.
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_000_000)), "2026-11-30T00:53:20Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn levels() {
        assert_eq!(Level::parse("DEBUG"), Level::Debug);
        assert_eq!(Level::parse(""), Level::Panic);
        assert!(Level::Error < Level::Verbose);
    }

    #[test]
    fn rotates_compresses_and_prunes() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("multus.log");
        let opts = LogOptions { max_size_mb: 1, max_backups: 2, max_age_days: 0, compress: true };
        let line = vec![b'x'; 400 * 1024];
        for _ in 0..12 {
            write_rotating(&path, &opts, &line).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().filter(|n| n.ends_with(".log.gz")).count() == 2, "{names:?}");
        assert!(std::fs::metadata(&path).unwrap().len() <= 1024 * 1024);
    }
}
