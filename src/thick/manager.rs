//! The thick config manager: keeps `<cniConfigDir>/00-multus.conf` in step with the primary CNI
//! config for the daemon (upstream `pkg/server/config/manager.go` plus the daemon's handling of
//! `multusConfigFile`), on a thread of its own.
//!
//! `multusConfigFile: auto` (the default):
//! 1. Watch `multusAutoconfigDir` (and the readiness indicator file's directory) with notify.
//! 2. Wait for the primary: `multusMasterCNI`, else the first config of the directory by name
//!    (`primary::Rule::Thick`), polling every second and on every event, for at most two minutes
//!    (`primary_timeout`); give up with [`Fatal::NoPrimary`]. Upstream waits for a file to
//!    appear but fails at once when it is unreadable or incompatible; we also wait for it to
//!    become usable (a primary caught half-written at boot is not fatal). `forceCNIVersion`
//!    rewrites the primary's `cniVersion` on disk once, as upstream does (kind/e2e only).
//! 3. Write the generated file (`thick::generate`) atomically with mode 0600.
//! 4. On every event that can change the primary (created, written and closed, renamed,
//!    removed; never an open or a read, which our own re-read causes, nor our own writes),
//!    collected for 50 ms, and once a second as a safety net for missed events, re-read it; when its content changed, regenerate and rewrite (only if the document
//!    changed). When it is unreadable, invalid or incompatible, keep the previous good file and
//!    log (upstream wrote an empty 00-multus.conf, issue #1155). A removed primary is logged
//!    and waited for; the selection is never re-evaluated (as upstream).
//! 5. When the readiness indicator file is removed or renamed away (an event, or seen missing
//!    after it had existed): delete 00-multus.conf and report [`Fatal::ReadinessRemoved`]; the
//!    daemon exits 2 (upstream calls `os.Exit(2)` itself).
//! 6. On [`ManagerHandle::stop`]: delete 00-multus.conf unless the daemon config says
//!    `"keepConfigOnExit": true` (our key, issue #1527: deleting it on every restart makes pods
//!    scheduled meanwhile come up with the primary CNI only). A file this manager never wrote is
//!    left alone.
//!
//! Any other `multusConfigFile`: that file is copied into `cniConfigDir` under its own name
//! (temp + rename, its mode kept) and the manager stays idle until stopped; it never deletes the
//! copy (as upstream). Upstream's daemon exited right after start in this mode (issue #1366) and
//! only logged a failed copy; [`Manager::start`] returns the copy error instead.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::Value;

use super::daemon_config::DaemonConfig;
use super::generate::{self as thick, ThickConf};
use crate::cni::version::Version;
use crate::confgen::Error;
use crate::confgen::{AUTO, primary};
use crate::files::{Durability, copy_atomic, write_atomic};
use crate::golang;
use crate::logging;

/// What the manager needs from daemon-config.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// The keys that shape the generated file.
    pub conf: ThickConf,
    /// `cniConfigDir` (default `/etc/cni/net.d`): where 00-multus.conf is written.
    pub cni_config_dir: PathBuf,
    /// `multusConfigFile` (default `auto`).
    pub multus_config_file: String,
    /// `multusAutoconfigDir`: where the primary is looked for (as a string: it is written into
    /// `clusterNetwork` with Go's path joining).
    pub autoconfig_dir: String,
    /// `multusMasterCNI`: the primary's file name in the autoconfig dir; empty selects by name.
    pub master_cni: String,
    /// `forceCNIVersion`.
    pub force_cni_version: bool,
    /// `readinessindicatorfile`.
    pub readiness_indicator_file: Option<PathBuf>,
    /// `keepConfigOnExit`.
    pub keep_config_on_exit: bool,
    /// How long to wait for a usable primary (upstream: 120 polls of 1 s).
    pub primary_timeout: Duration,
    /// Poll interval while waiting, and of the safety-net re-read while watching.
    pub poll_interval: Duration,
}

impl ManagerConfig {
    /// The manager's part of the daemon's config (read once, by [`DaemonConfig::parse`]).
    pub fn from_daemon(c: &DaemonConfig) -> ManagerConfig {
        ManagerConfig {
            conf: c.generated.clone(),
            cni_config_dir: c.cni_config_dir.clone(),
            multus_config_file: c.multus_config_file.clone(),
            autoconfig_dir: c.multus_autoconfig_dir.clone(),
            master_cni: c.multus_master_cni.clone(),
            force_cni_version: c.force_cni_version,
            readiness_indicator_file: (!c.readiness_indicator_file.is_empty())
                .then(|| PathBuf::from(&c.readiness_indicator_file)),
            keep_config_on_exit: c.keep_config_on_exit,
            primary_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
        }
    }

    pub fn is_auto(&self) -> bool {
        self.multus_config_file == AUTO
    }

    /// The file the manager writes: `<cniConfigDir>/00-multus.conf`, or the copy of
    /// `multusConfigFile`.
    pub fn conf_path(&self) -> PathBuf {
        if self.is_auto() {
            self.cni_config_dir.join(thick::CONF_NAME)
        } else {
            let name = Path::new(&self.multus_config_file).file_name().unwrap_or_default();
            self.cni_config_dir.join(name)
        }
    }
}

/// A condition that ends the daemon (upstream exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// No usable primary config appeared within `primary_timeout`; the last problem.
    NoPrimary(String),
    /// The readiness indicator file was removed; 00-multus.conf has been deleted.
    ReadinessRemoved(PathBuf),
}

impl Fatal {
    /// The daemon's exit code (upstream: 2 for both).
    pub fn exit_code(&self) -> i32 {
        2
    }
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::NoPrimary(e) => write!(f, "no usable primary CNI config: {e}"),
            Fatal::ReadinessRemoved(p) => write!(f, "readiness indicator file {} was removed", p.display()),
        }
    }
}

/// What the manager has done so far (for logs, health and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The primary config in use, once selected.
    pub primary: Option<PathBuf>,
    /// How many times the config file was written.
    pub writes: u64,
    /// How many distinct contents of the primary were examined after the first generation.
    pub checks: u64,
    /// Why the last examined content of the primary was not used; `None` after a success.
    pub last_error: Option<String>,
}

enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// Entry point; see the module doc.
#[derive(Debug)]
pub struct Manager;

impl Manager {
    /// Validates the config, starts watching and returns at once; the primary is waited for
    /// on the manager's thread. Errors here are configuration or setup errors (upstream: exit 2).
    pub fn start(cfg: ManagerConfig) -> Result<ManagerHandle, Error> {
        let (fatal_tx, fatal_rx) = channel();
        let status = Arc::new(Mutex::new(Status::default()));
        let (tx, rx) = channel();
        let conf_path = cfg.conf_path();
        if !cfg.is_auto() {
            let src = PathBuf::from(&cfg.multus_config_file);
            let name = src.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                Error::Invalid(format!("multusConfigFile {:?} has no file name", cfg.multus_config_file))
            })?;
            // The directory is created as in auto mode (the runtime may not have made it yet).
            std::fs::create_dir_all(&cfg.cni_config_dir)
                .map_err(|e| Error::io("failed to create", &cfg.cni_config_dir, e))
                .and_then(|()| Ok(copy_atomic(&src, &cfg.cni_config_dir, name)?))
                .map_err(|e| e.context("failed to copy the user provided multusConfigFile"))?;
            logging::verbose(&format!("copied {} to {}", src.display(), conf_path.display()));
            status.lock().expect("status lock").writes = 1;
            return Ok(ManagerHandle {
                tx,
                thread: None,
                fatal: Some(fatal_rx),
                idle_fatal: Some(fatal_tx),
                status,
                conf_path,
            });
        }

        validate_auto(&cfg)?;
        let events = tx.clone();
        let mut watcher = notify::recommended_watcher(move |ev| {
            let _ = events.send(Msg::Fs(ev));
        })
        .map_err(|e| Error::Setup(format!("failed to create a file watcher: {e}")))?;
        let watch = |w: &mut notify::RecommendedWatcher, dir: &Path| {
            w.watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| Error::Invalid(format!("failed to watch {}: {e}", dir.display())))
        };
        let autoconfig_dir = PathBuf::from(&cfg.autoconfig_dir);
        watch(&mut watcher, &autoconfig_dir)?;
        if let Some(dir) = cfg.readiness_indicator_file.as_deref().and_then(Path::parent) {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            if dir != autoconfig_dir {
                watch(&mut watcher, dir)?;
            }
        }
        let worker = Worker {
            conf_path: conf_path.clone(),
            cfg,
            rx,
            status: status.clone(),
            _watcher: watcher,
            readiness_seen: false,
            pending: None,
            wrote: false,
            forced: false,
        };
        let thread = std::thread::Builder::new()
            .name("multus-config-manager".into())
            .spawn(move || worker.run(fatal_tx))
            .map_err(|e| Error::Setup(format!("failed to start the config manager thread: {e}")))?;
        Ok(ManagerHandle { tx, thread: Some(thread), fatal: Some(fatal_rx), idle_fatal: None, status, conf_path })
    }
}

fn validate_auto(cfg: &ManagerConfig) -> Result<(), Error> {
    if cfg.autoconfig_dir.is_empty() {
        return Err(Error::Invalid("multusAutoconfigDir must be set when multusConfigFile is \"auto\"".into()));
    }
    if cfg.conf.cni_version.is_empty() || Version::parse(&cfg.conf.cni_version).is_err() {
        return Err(Error::Invalid(format!(
            "the CNI version is mandatory when multusConfigFile is \"auto\"; cniVersion is {:?}",
            cfg.conf.cni_version
        )));
    }
    if !cfg.master_cni.is_empty() {
        let primary = golang::join(&cfg.autoconfig_dir, &cfg.master_cni);
        let own = golang::join(&cfg.cni_config_dir.to_string_lossy(), thick::CONF_NAME);
        if primary == own {
            return Err(Error::Invalid(format!(
                "cannot use {primary} as the primary CNI config: it is our own output"
            )));
        }
    }
    Ok(())
}

/// The running manager. Dropping it stops it like [`ManagerHandle::stop`] (errors ignored).
#[derive(Debug)]
pub struct ManagerHandle {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<Result<(), Error>>>,
    fatal: Option<Receiver<Fatal>>,
    /// In copy mode nothing can be fatal; holding the sender keeps `fatal()` waiting until stop.
    idle_fatal: Option<Sender<Fatal>>,
    status: Arc<Mutex<Status>>,
    conf_path: PathBuf,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Fs(e) => write!(f, "Fs({e:?})"),
            Msg::Stop => write!(f, "Stop"),
        }
    }
}

impl ManagerHandle {
    /// Receives at most one [`Fatal`]; `recv` fails once the manager has stopped without one.
    /// Panics after [`ManagerHandle::take_fatal`].
    pub fn fatal(&self) -> &Receiver<Fatal> {
        self.fatal.as_ref().expect("the fatal receiver was taken")
    }

    /// The fatal receiver, to wait on elsewhere (e.g. `tokio::task::spawn_blocking`).
    pub fn take_fatal(&mut self) -> Option<Receiver<Fatal>> {
        self.fatal.take()
    }

    /// A snapshot of what the manager did so far.
    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    /// The config file this manager owns.
    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    /// Stops watching and cleans up (see the module doc); blocks until done.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        self.idle_fatal = None;
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.tx.send(Msg::Stop);
        thread.join().unwrap_or_else(|_| Err(Error::Setup("the config manager thread panicked".into())))
    }
}

impl Drop for ManagerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The primary in use after the first generation.
struct Current {
    path: PathBuf,
    /// The path as written into `clusterNetwork`.
    cluster_network: String,
    /// The content last examined (`None`: missing or unreadable, or a write failed).
    seen: Option<Vec<u8>>,
    /// The document last written.
    written: String,
}

enum Exit {
    Stopped,
    Fatal(Fatal),
}

enum Wake {
    Stop,
    Fatal(Fatal),
    /// A file-system event for these paths.
    Event(Vec<PathBuf>),
    /// The timeout passed (or the watcher reported an error).
    Timeout,
    /// An event that cannot change the generated config.
    Ignored,
}

struct Worker {
    cfg: ManagerConfig,
    conf_path: PathBuf,
    rx: Receiver<Msg>,
    status: Arc<Mutex<Status>>,
    _watcher: notify::RecommendedWatcher,
    readiness_seen: bool,
    /// A message [`Worker::debounce`] received but did not handle.
    pending: Option<Msg>,
    wrote: bool,
    forced: bool,
}

impl Worker {
    fn run(mut self, fatal_tx: Sender<Fatal>) -> Result<(), Error> {
        match self.manage() {
            Exit::Stopped => {
                logging::verbose("config manager stopped");
                if self.wrote && !self.cfg.keep_config_on_exit {
                    return remove(&self.conf_path);
                }
                Ok(())
            }
            Exit::Fatal(fatal) => {
                logging::error(&format!("config manager: {fatal}"));
                let result = match fatal {
                    Fatal::ReadinessRemoved(_) => remove(&self.conf_path),
                    Fatal::NoPrimary(_) => Ok(()),
                };
                let _ = fatal_tx.send(fatal);
                result
            }
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().expect("status lock"));
    }

    fn manage(&mut self) -> Exit {
        let deadline = Instant::now() + self.cfg.primary_timeout;
        let mut last_error = String::new();
        let mut current = loop {
            match self.first_generation() {
                Ok(c) => break c,
                Err(e) => {
                    let e = e.to_string();
                    if e != last_error {
                        logging::verbose(&format!("waiting for the primary CNI config: {e}"));
                        self.set_status(|s| s.last_error = Some(e.clone()));
                        last_error = e;
                    }
                }
            }
            // Next try: on an event that can change the outcome, or after the poll interval.
            let next_poll = Instant::now() + self.cfg.poll_interval;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Exit::Fatal(Fatal::NoPrimary(last_error));
                }
                match self.wait(next_poll.min(deadline).saturating_duration_since(now)) {
                    Wake::Stop => return Exit::Stopped,
                    Wake::Fatal(f) => return Exit::Fatal(f),
                    Wake::Ignored if Instant::now() < next_poll => continue,
                    Wake::Event(_) | Wake::Timeout | Wake::Ignored => break,
                }
            }
        };
        logging::verbose(&format!("watching the primary CNI config {}", current.path.display()));
        // The safety-net re-read runs once per poll interval even when unrelated events keep
        // the wait from timing out.
        let mut next_resync = Instant::now() + self.cfg.poll_interval;
        loop {
            let wake = self.wait(next_resync.saturating_duration_since(Instant::now()));
            let due = Instant::now() >= next_resync;
            match wake {
                Wake::Stop => return Exit::Stopped,
                Wake::Fatal(f) => return Exit::Fatal(f),
                Wake::Ignored if !due => continue,
                Wake::Event(paths) if !due && !paths.contains(&current.path) => continue,
                Wake::Event(_) | Wake::Timeout | Wake::Ignored => self.reconcile(&mut current),
            }
            if due {
                next_resync = Instant::now() + self.cfg.poll_interval;
            }
        }
    }

    /// Selects the primary and writes the first file; any failure means "not yet".
    fn first_generation(&mut self) -> Result<Current, Error> {
        let dir = Path::new(&self.cfg.autoconfig_dir);
        let name = if self.cfg.master_cni.is_empty() {
            primary::find(dir, primary::Rule::Thick)?
                .ok_or_else(|| Error::Invalid(format!("no CNI config found in {}", dir.display())))?
        } else {
            self.cfg.master_cni.clone()
        };
        let cluster_network = golang::join(&self.cfg.autoconfig_dir, &name);
        let path = PathBuf::from(&cluster_network);
        if self.cfg.force_cni_version && !self.forced {
            force_cni_version(&path, &self.cfg.conf.cni_version)?;
            self.forced = true;
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io("failed to read the primary CNI config", &path, e))?;
        let doc = thick::generate(&self.cfg.conf, &cluster_network, &primary::parse(&bytes, &path)?)?;
        self.write(&doc)?;
        logging::verbose(&format!("generated {} from {}: {doc}", self.conf_path.display(), path.display()));
        self.set_status(|s| {
            s.primary = Some(path.clone());
            s.last_error = None;
        });
        Ok(Current { path, cluster_network, seen: Some(bytes), written: doc })
    }

    fn write(&mut self, doc: &str) -> Result<(), Error> {
        write_atomic(&self.conf_path, doc.as_bytes(), 0o600, 0o755, Durability::Sync)?;
        self.wrote = true;
        self.set_status(|s| s.writes += 1);
        Ok(())
    }

    /// Re-reads the primary; regenerates when its content changed.
    fn reconcile(&mut self, current: &mut Current) {
        let bytes = match std::fs::read(&current.path) {
            Ok(b) => b,
            Err(e) => {
                if current.seen.is_some() {
                    logging::error(&format!(
                        "cannot read the primary CNI config {}: {e}; keeping {}",
                        current.path.display(),
                        self.conf_path.display()
                    ));
                }
                current.seen = None;
                return;
            }
        };
        if current.seen.as_deref() == Some(&bytes[..]) {
            return;
        }
        current.seen = Some(bytes.clone());
        let generated = primary::parse(&bytes, &current.path)
            .and_then(|p| thick::generate(&self.cfg.conf, &current.cluster_network, &p));
        match generated {
            Ok(doc) => {
                if doc != current.written {
                    if let Err(e) = self.write(&doc) {
                        logging::error(&format!("failed to write {}: {e}", self.conf_path.display()));
                        current.seen = None;
                        return;
                    }
                    logging::verbose(&format!("regenerated {}: {doc}", self.conf_path.display()));
                    current.written = doc;
                }
                self.set_status(|s| {
                    s.checks += 1;
                    s.last_error = None;
                });
            }
            Err(e) => {
                logging::error(&format!(
                    "the primary CNI config {} is not usable: {e}; keeping the previous {}",
                    current.path.display(),
                    self.conf_path.display()
                ));
                self.set_status(|s| {
                    s.checks += 1;
                    s.last_error = Some(e.to_string());
                });
            }
        }
    }

    /// Waits for a message or the timeout; checks the readiness indicator file.
    fn wait(&mut self, timeout: Duration) -> Wake {
        let received = match self.pending.take() {
            Some(msg) => Ok(msg),
            None => self.rx.recv_timeout(timeout),
        };
        let wake = match received {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return Wake::Stop,
            Ok(Msg::Fs(Err(e))) => {
                logging::error(&format!("config manager: watch error: {e}"));
                Wake::Timeout
            }
            Ok(Msg::Fs(Ok(ev))) => {
                if let Some(ready) = &self.cfg.readiness_indicator_file {
                    if removes(&ev, ready) {
                        return Wake::Fatal(Fatal::ReadinessRemoved(ready.clone()));
                    }
                }
                if !can_change_config(&ev, &self.conf_path) {
                    // Opens and reads (ours included: every re-read of the primary is an
                    // IN_OPEN), attribute changes and our own writes change nothing we generate;
                    // reacting to them made the manager re-read the primary forever.
                    return Wake::Ignored;
                }
                logging::debug(&format!("config manager: {ev:?}"));
                Wake::Event(self.debounce(ev.paths))
            }
            Err(RecvTimeoutError::Timeout) => Wake::Timeout,
        };
        if let Some(ready) = &self.cfg.readiness_indicator_file {
            if ready.exists() {
                self.readiness_seen = true;
            } else if self.readiness_seen {
                return Wake::Fatal(Fatal::ReadinessRemoved(ready.clone()));
            }
        }
        wake
    }
}

/// How long a burst of events (an editor's write, a temp file renamed in place) is collected
/// before the primary is read once for all of them.
const DEBOUNCE: Duration = Duration::from_millis(50);

impl Worker {
    /// Collects the events that follow `paths` within [`DEBOUNCE`] (a stop or another message is
    /// left for the next wait).
    fn debounce(&mut self, mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
        let until = Instant::now() + DEBOUNCE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return paths;
            }
            match self.rx.recv_timeout(left) {
                Ok(Msg::Fs(Ok(ev))) if !self.readiness_removed(&ev) => {
                    if can_change_config(&ev, &self.conf_path) {
                        paths.extend(ev.paths);
                    }
                }
                Ok(msg) => {
                    self.pending = Some(msg);
                    return paths;
                }
                Err(_) => return paths,
            }
        }
    }

    fn readiness_removed(&self, ev: &notify::Event) -> bool {
        self.cfg.readiness_indicator_file.as_deref().is_some_and(|ready| removes(ev, ready))
    }
}

/// Whether an event can change the generated config: a CNI config file (`.conf`, `.conflist`,
/// `.json`) or the readiness indicator created, written and closed, renamed or removed. Opens,
/// reads, attribute changes and the file this manager writes itself (and its temp file) cannot.
fn can_change_config(ev: &notify::Event, own: &Path) -> bool {
    use notify::event::{AccessKind, AccessMode};
    let kind = match ev.kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
    };
    let own_tmp = own.file_name().map(|n| format!(".{}.tmp", n.to_string_lossy()));
    kind && ev.paths.iter().any(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let ours = p == own || own_tmp.as_deref().is_some_and(|t| name.starts_with(t));
        !ours && !name.starts_with('.')
    })
}

/// True when the event removes `path` or renames it away.
fn removes(ev: &notify::Event, path: &Path) -> bool {
    let away = matches!(
        ev.kind,
        EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Both | RenameMode::Any))
    );
    away && ev.paths.first().is_some_and(|p| p == path)
}

fn remove(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            logging::verbose(&format!("deleted {}", path.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("failed to delete", path, e)),
    }
}

/// `forceCNIVersion`: rewrites the primary file's `cniVersion` (other keys keep their order).
fn force_cni_version(path: &Path, version: &str) -> Result<(), Error> {
    let mut primary = primary::load(path)?;
    primary.insert("cniVersion".into(), Value::String(version.into()));
    let bytes = serde_json::to_vec(&primary).expect("a map serializes");
    Ok(write_atomic(path, &bytes, 0o644, 0o755, Durability::Sync)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn from_daemon_config(v: Value) -> Result<ManagerConfig, crate::cni::Error> {
        DaemonConfig::parse(&serde_json::to_vec(&v).unwrap()).map(|c| ManagerConfig::from_daemon(&c))
    }

    #[test]
    fn daemon_config_defaults_and_keys() {
        let c = from_daemon_config(json!({"cniVersion": "0.3.1"})).unwrap();
        assert_eq!(c.cni_config_dir, PathBuf::from("/etc/cni/net.d"));
        assert!(c.is_auto());
        assert_eq!(c.conf_path(), PathBuf::from("/etc/cni/net.d/00-multus.conf"));
        assert_eq!(c.autoconfig_dir, "");
        assert_eq!(c.readiness_indicator_file, None);
        assert!(!c.keep_config_on_exit);
        assert_eq!(c.primary_timeout, Duration::from_secs(120));

        let c = from_daemon_config(
            json!({"cniConfigDir": "/host/etc/cni/net.d", "multusConfigFile": "/tmp/multus-conf/70-multus.conf",
                "multusAutoconfigDir": "/a", "multusMasterCNI": "10-x.conf", "forceCNIVersion": true,
                "readinessindicatorfile": "/run/ready", "keepConfigOnExit": true}),
        )
        .unwrap();
        assert!(!c.is_auto());
        assert_eq!(c.conf_path(), PathBuf::from("/host/etc/cni/net.d/70-multus.conf"));
        assert_eq!(c.master_cni, "10-x.conf");
        assert!(c.force_cni_version && c.keep_config_on_exit);
        assert_eq!(c.readiness_indicator_file, Some(PathBuf::from("/run/ready")));
        assert!(from_daemon_config(json!({"keepConfigOnExit": "yes"})).is_err());
        // An empty multusConfigFile is auto mode, as upstream (it used to be "copy the file ''"
        // here while the daemon called the manager as auto).
        let c = from_daemon_config(json!({"multusConfigFile": "", "cniVersion": "1.0.0"})).unwrap();
        assert!(c.is_auto());
    }

    #[test]
    fn auto_mode_needs_a_dir_a_version_and_no_recursion() {
        let mut c =
            from_daemon_config(json!({"cniVersion": "0.4.0", "multusAutoconfigDir": "/e", "cniConfigDir": "/e/"}))
                .unwrap();
        assert!(validate_auto(&c).is_ok());
        c.master_cni = "00-multus.conf".into();
        assert!(validate_auto(&c).unwrap_err().to_string().contains("our own output"));
        c.master_cni.clear();
        c.conf.cni_version.clear();
        assert!(validate_auto(&c).is_err());
        c.conf.cni_version = "0.4.0".into();
        c.autoconfig_dir.clear();
        assert!(validate_auto(&c).is_err());
    }

    #[test]
    fn only_events_that_can_change_the_config_count() {
        use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, MetadataKind};
        let own = PathBuf::from("/e/00-multus.conf");
        let ev = |kind, path: &str| notify::Event { kind, paths: vec![PathBuf::from(path)], attrs: Default::default() };
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let read_closed = EventKind::Access(AccessKind::Close(AccessMode::Read));
        let written = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        // Reading the primary (what the manager itself does) is no change.
        assert!(!can_change_config(&ev(open, "/e/10-cbr.conflist"), &own));
        assert!(!can_change_config(&ev(read_closed, "/e/10-cbr.conflist"), &own));
        assert!(!can_change_config(
            &ev(EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)), "/e/10-cbr.conflist"),
            &own
        ));
        // Our own file and its temp file are no change either.
        assert!(!can_change_config(&ev(written, "/e/00-multus.conf"), &own));
        assert!(!can_change_config(&ev(EventKind::Create(CreateKind::File), "/e/.00-multus.conf.tmp42"), &own));
        for kind in
            [written, data, EventKind::Create(CreateKind::File), EventKind::Remove(notify::event::RemoveKind::Any)]
        {
            assert!(can_change_config(&ev(kind, "/e/10-cbr.conflist"), &own), "{kind:?}");
        }
        let rename = notify::Event {
            kind: EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            paths: vec![PathBuf::from("/e/.tmp"), PathBuf::from("/e/10-cbr.conflist")],
            attrs: Default::default(),
        };
        assert!(can_change_config(&rename, &own));
    }

    #[test]
    fn removal_events() {
        let p = PathBuf::from("/r/ready");
        let ev = |kind, paths: Vec<&str>| notify::Event {
            kind,
            paths: paths.into_iter().map(PathBuf::from).collect(),
            attrs: Default::default(),
        };
        assert!(removes(&ev(EventKind::Remove(notify::event::RemoveKind::File), vec!["/r/ready"]), &p));
        assert!(removes(&ev(EventKind::Modify(ModifyKind::Name(RenameMode::From)), vec!["/r/ready"]), &p));
        assert!(removes(&ev(EventKind::Modify(ModifyKind::Name(RenameMode::Both)), vec!["/r/ready", "/r/x"]), &p));
        // Atomically replaced (a temp renamed onto it) is not a removal.
        assert!(!removes(&ev(EventKind::Modify(ModifyKind::Name(RenameMode::Both)), vec!["/r/tmp", "/r/ready"]), &p));
        assert!(!removes(&ev(EventKind::Remove(notify::event::RemoveKind::File), vec!["/r/other"]), &p));
        assert!(!removes(&ev(EventKind::Create(notify::event::CreateKind::File), vec!["/r/ready"]), &p));
    }
}
