//! The daemon around the server (upstream `cmd/multus-daemon`): its command line, the startup
//! sequence ([`run`]: readiness indicator wait, the config manager or the user-provided config
//! copy, how delegates are run, the Kubernetes caches), and serving the socket (plus metrics)
//! until a shutdown signal or a fatal config-manager condition, with a self-check once
//! listening. The binary only parses the command line, reads the config and maps [`Exit`] to
//! the process's exit code.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;

use super::api::HEALTH_ENDPOINT;
use super::chroot::ChrootExec;
use super::client;
use super::daemon_config::{DEFAULT_PATH, DaemonConfig};
use super::manager::{Fatal, Manager, ManagerConfig, ManagerHandle};
use super::server::{self, Server};
use crate::cni::error::Error;
use crate::cni::{Exec, RawExec};

use crate::k8s::client as k8s_client;
use crate::k8s::informer::InformerCluster;
use crate::logging;
use crate::multus::kube::{Cluster, NoCluster};

/// How long startup waits for the readiness indicator file, and how often it looks.
pub const READINESS_WAIT: Duration = Duration::from_secs(45);
pub const READINESS_POLL: Duration = Duration::from_secs(1);

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cli {
    Run {
        config: PathBuf,
    },
    /// Print the version and exit 0 (upstream exits 4).
    Version,
    Help,
}

pub const USAGE: &str = "Usage of multus-daemon:\n  -config string\n    \tthe path of the daemon configuration (default \"/etc/cni/net.d/multus.d/daemon-config.json\")\n  -version\n    \tprint the version and exit\n";

/// Go `flag` syntax: `-config PATH`, `-config=PATH`, `-version`, each also with `--`; parsing
/// stops at the first argument that is not a flag or at `--`.
pub fn parse_args(args: &[String]) -> Result<Cli, String> {
    let mut config = PathBuf::from(DEFAULT_PATH);
    let mut version = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" || !arg.starts_with('-') || arg == "-" {
            break;
        }
        let flag = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "config" => {
                config = PathBuf::from(match value {
                    Some(v) => v,
                    None => it.next().cloned().ok_or("flag needs an argument: -config")?,
                });
            }
            "version" => {
                version = match value.as_deref() {
                    None | Some("true") | Some("1") => true,
                    Some("false") | Some("0") => false,
                    Some(v) => return Err(format!("invalid boolean value {v:?} for -version")),
                };
            }
            "h" | "help" => return Ok(Cli::Help),
            other => return Err(format!("flag provided but not defined: -{other}")),
        }
    }
    Ok(if version { Cli::Version } else { Cli::Run { config } })
}

/// Polls for `file` until it exists or `timeout` passed; true when it exists.
pub fn wait_for_file(file: &Path, timeout: Duration, interval: Duration) -> bool {
    let start = Instant::now();
    loop {
        if file.exists() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(interval.min(timeout.saturating_sub(start.elapsed())).max(Duration::from_millis(1)));
    }
}

/// How delegates run: chrooted into `chrootDir`, else as plain child processes.
pub fn delegate_exec(config: &DaemonConfig) -> Result<Arc<dyn Exec>, Error> {
    Ok(match &config.chroot_dir {
        Some(root) => {
            logging::verbose(&format!("server configured with chroot: {}", root.display()));
            Arc::new(ChrootExec::new(root)?)
        }
        None => Arc::new(RawExec::default()),
    })
}

/// What the daemon takes from its process besides the config file.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `MULTUS_NODE_NAME`: the node whose pods are watched (every node's when empty).
    pub node: String,
    /// `CNI_PATH`: where delegates are found when a request carries none.
    pub cni_path: String,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Env { node: var("MULTUS_NODE_NAME"), cni_path: var("CNI_PATH") }
    }
}

/// Why the daemon stopped (its start-up and run errors), with upstream's exit code.
#[derive(Debug, thiserror::Error)]
pub enum Exit {
    #[error("readiness indicator file {} did not appear within 45s", .0.display())]
    NotReady(PathBuf),
    #[error("cannot use the Kubernetes API: {0}")]
    Kubernetes(#[source] crate::k8s::Error),
    #[error("cannot run delegates: {0}")]
    Delegates(#[source] Error),
    #[error("config manager: {0}")]
    ConfigManager(#[source] crate::confgen::Error),
    /// The manager gave up while running (no primary in time, readiness indicator removed).
    #[error("config manager: {0}")]
    Fatal(Fatal),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot serve: {0}")]
    Serve(#[source] ServeError),
}

impl Exit {
    /// Upstream's exit codes: 1 not ready or unusable API server, 2 config manager, 3 cannot serve.
    pub fn code(&self) -> u8 {
        match self {
            Exit::NotReady(_) | Exit::Kubernetes(_) | Exit::Delegates(_) => 1,
            Exit::ConfigManager(_) => 2,
            Exit::Fatal(f) => f.exit_code() as u8,
            Exit::Runtime(_) | Exit::Signals(_) | Exit::Serve(_) => 3,
        }
    }
}

/// How long the daemon waits for its pod and NAD caches to fill before serving (upstream: 20 s;
/// an unsynced cache only means live lookups).
const CACHE_SYNC: Duration = Duration::from_secs(20);

/// The daemon's view of Kubernetes: watch-fed caches when an API server is configured (the
/// `kubeconfig` key, else `KUBECONFIG`, else in-cluster settings), else none.
async fn cluster(config: &DaemonConfig, node: &str) -> Result<Arc<dyn Cluster + Send + Sync>, Exit> {
    if let Some(p) = config.per_node_certificate.as_ref().filter(|p| p.enabled) {
        if p.bootstrap_kubeconfig.is_empty() {
            return Err(Exit::Kubernetes(crate::k8s::Error::Config(
                "perNodeCertificate.bootstrapKubeconfig is not set".into(),
            )));
        }
        let settings = crate::k8s::pernode::settings(node, &p.cert_dir, &p.cert_duration).map_err(Exit::Kubernetes)?;
        logging::verbose(&format!("per-node certificate for {node} in {}", p.cert_dir));
        let (client, watch_client) =
            crate::k8s::pernode::clients(std::path::Path::new(&p.bootstrap_kubeconfig), settings)
                .await
                .map_err(Exit::Kubernetes)?;
        let handle = tokio::runtime::Handle::current();
        return Ok(Arc::new(InformerCluster::start(handle, client, watch_client, node, CACHE_SYNC).await));
    }
    let kubeconfig = config.raw.get("kubeconfig").and_then(|v| v.as_str()).unwrap_or_default();
    let source = k8s_client::daemon_source(kubeconfig, |k| std::env::var(k).ok());
    let connected = k8s_client::connect_with_watch(&source).await;
    let Some((client, watch_client)) = connected.map_err(Exit::Kubernetes)? else {
        logging::verbose("no Kubernetes API server configured: serving static delegates only");
        return Ok(Arc::new(NoCluster));
    };
    if node.is_empty() {
        logging::error("MULTUS_NODE_NAME is not set: watching the pods of every node");
    }
    let handle = tokio::runtime::Handle::current();
    Ok(Arc::new(InformerCluster::start(handle, client, watch_client, node, CACHE_SYNC).await))
}

/// The config manager: in `auto` mode it generates `00-multus.conf` and watches the primary (a
/// failure to start is fatal, exit 2); otherwise it copies the user's file into cniConfigDir, and
/// a failed copy is logged and the daemon serves on (as upstream; unlike 4.2.1 it keeps running).
fn config_manager(config: &DaemonConfig) -> Result<Option<ManagerHandle>, Exit> {
    match Manager::start(ManagerConfig::from_daemon(config)) {
        Ok(m) => Ok(Some(m)),
        Err(e) if !config.is_auto() => {
            logging::error(&format!("failed to copy the multus config file: {e}"));
            Ok(None)
        }
        Err(e) => Err(Exit::ConfigManager(e)),
    }
}

/// The whole daemon after its config is read: readiness wait, config manager or user config,
/// delegate executor, Kubernetes caches, serving until SIGTERM/SIGINT or a fatal config-manager
/// condition, then the drain and the manager's cleanup. Exit codes as upstream: 1 readiness
/// indicator missing after 45 s or API server unusable, 2 config manager failure (also: the
/// readiness indicator removed while running), 3 cannot listen or serve.
pub fn run(config: DaemonConfig, env: Env) -> Result<(), Exit> {
    if !config.readiness_indicator_file.is_empty() {
        let file = Path::new(&config.readiness_indicator_file);
        if !wait_for_file(file, READINESS_WAIT, READINESS_POLL) {
            return Err(Exit::NotReady(file.to_path_buf()));
        }
    }
    let mut manager = config_manager(&config)?;
    let fatal = manager.as_mut().and_then(ManagerHandle::take_fatal);
    let exec = delegate_exec(&config).map_err(Exit::Delegates)?;
    limit_malloc_arenas();
    // The blocking pool runs the requests' work (at most maxConcurrentRequests at once) and a few
    // cache lookups: sized to that, not to tokio's default of 512 threads; its idle threads leave
    // after BLOCKING_KEEP_ALIVE (tokio: 10 s) so a burst's stacks go soon. The async workers only route requests
    // and feed the caches: a node agent needs few, however many cores the node has.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_keep_alive(super::server::BLOCKING_KEEP_ALIVE)
        .max_blocking_threads(config.max_concurrent_requests + 8)
        .enable_all()
        .build()
        .map_err(Exit::Runtime)?;
    let served = rt.block_on(async {
        let cluster = cluster(&config, &env.node).await?;
        let server = Server::new(config, cluster, exec, env.cni_path);
        let signals = signals().map_err(Exit::Signals)?;
        // The manager reports on a std channel: one blocking task waits for it.
        let fatal = async move {
            match fatal {
                Some(rx) => tokio::task::spawn_blocking(move || rx.recv().ok()).await.ok().flatten(),
                None => std::future::pending().await,
            }
        };
        let (why_tx, why_rx) = tokio::sync::oneshot::channel::<Option<Fatal>>();
        let shutdown = async move {
            let why = tokio::select! {
                () = signals => None,
                Some(f) = fatal => Some(f),
            };
            let _ = why_tx.send(why);
        };
        serve(server, shutdown, |_| {}).await.map_err(Exit::Serve)?;
        Ok(why_rx.await.ok().flatten())
    });
    // Work still running past the shutdown deadline is not waited for (the process exits and its
    // delegates die with their parent-death signal).
    rt.shutdown_background();
    if let Some(m) = manager {
        if let Err(e) = m.stop() {
            logging::error(&format!("config manager: {e}"));
        }
    }
    match served? {
        None => {
            logging::verbose("multus-daemon stopped");
            Ok(())
        }
        Some(f) => Err(Exit::Fatal(f)),
    }
}

/// At most two glibc malloc arenas: by default every thread that allocates under contention may
/// get an arena of its own (up to 8 per core), and each keeps freed memory for itself, so a burst
/// of concurrent requests left the daemon's RSS near its peak. Two arenas are enough for a
/// daemon whose requests mostly wait on their delegates.
/// An operator's `MALLOC_ARENA_MAX` is left to rule.
/// glibc's malloc setting the daemon starts with: no per-thread caches (tcache). Each of a burst's
/// up to `maxConcurrentRequests` blocking threads otherwise keeps its own cache of freed chunks, and
/// the arena cannot reuse them: measured over a 200-pod burst, peak RSS 16.6 MB with the caches,
/// 12.5 MB without, at the same pods per second. glibc reads it only from the environment at start.
pub const MALLOC_TUNABLES: &str = "glibc.malloc.tcache_count=0";
/// Set on the re-executed daemon so it knows the tunables are its own (and takes them out of the
/// environment its delegates inherit).
const TUNED_MARK: &str = "MULTUS_DAEMON_MALLOC_TUNED";

/// Called in `main` before any thread exists, when the daemon is about to serve: unless
/// `GLIBC_TUNABLES` is already set (an operator's choice is kept), re-executes this binary (same
/// pid, arguments and environment) with [`MALLOC_TUNABLES`]; in the re-executed daemon, removes both
/// variables again so delegates do not inherit them. `execve` itself, never a shell fallback: if it
/// fails (e.g. a foreign binary under qemu-user) the daemon runs on with glibc's defaults.
pub fn tune_malloc_at_start() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::{CString, OsString};
        use std::os::unix::ffi::OsStrExt;
        if std::env::var_os(TUNED_MARK).is_some() {
            // SAFETY: called first in main, while the process has a single thread.
            unsafe {
                std::env::remove_var(TUNED_MARK);
                std::env::remove_var("GLIBC_TUNABLES");
            }
            return;
        }
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let c = |b: &[u8]| CString::new(b).ok();
        let mut env: Vec<OsString> = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            })
            .collect();
        env.push(format!("GLIBC_TUNABLES={MALLOC_TUNABLES}").into());
        env.push(format!("{TUNED_MARK}=1").into());
        let (Some(path), Some(argv), Some(envp)) = (
            c(exe.as_os_str().as_bytes()),
            std::env::args_os().map(|a| c(a.as_bytes())).collect::<Option<Vec<_>>>(),
            env.iter().map(|e| c(e.as_bytes())).collect::<Option<Vec<_>>>(),
        ) else {
            return;
        };
        let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
        let (argv_p, envp_p) = (ptrs(&argv), ptrs(&envp));
        // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call; execve
        // returns only on failure.
        unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
        let err = std::io::Error::last_os_error();
        eprintln!("multus-daemon: running with glibc's malloc defaults: cannot re-execute {}: {err}", exe.display());
    }
}

fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc's mallopt is thread-safe and only sets an allocator parameter (it limits the
    // arenas made from now on; the runtime's threads do not exist yet).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Listen(Error),
    #[error("the daemon does not answer on its own socket {}: {source}", socket.display())]
    SelfCheck { socket: PathBuf, source: client::ClientError },
    #[error("{0}")]
    Serve(Error),
}

/// Recreates the socket directory, listens, checks `/healthz` on its own socket, serves metrics
/// when configured, and serves until `shutdown`; then finishes the requests in flight and removes
/// the socket. `ready` is called once the socket answers.
pub async fn serve(
    server: Arc<Server>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Path),
) -> Result<(), ServeError> {
    let dir = server.config.socket_dir.clone();
    server::prepare_socket_dir(&dir).map_err(ServeError::Listen)?;
    let (listener, socket) = server::listen(&dir).map_err(ServeError::Listen)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if let Some(port) = server.config.metrics_port {
        serve_metrics(&server, port, stopped(stop_rx.clone())).await;
    }
    let serving = tokio::spawn(server::serve(listener, socket.clone(), server.clone(), stopped(stop_rx)));
    let mut check = Err(client::ClientError::Timeout(Duration::ZERO));
    for _ in 0..50 {
        let probe = socket.clone();
        check = tokio::task::spawn_blocking(move || {
            client::send(&probe, Method::GET, HEALTH_ENDPOINT, &[], Some(Duration::from_secs(5)))
        })
        .await
        .unwrap_or_else(|e| Err(client::ClientError::Http(format!("the probe failed: {e}"))))
        .and_then(|r| {
            if r.status == 200 { Ok(()) } else { Err(client::ClientError::Http(format!("status {}", r.status))) }
        });
        if check.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Err(source) = check {
        let _ = stop_tx.send(true);
        let _ = serving.await;
        return Err(ServeError::SelfCheck { socket, source });
    }
    logging::verbose(&format!("multus-daemon is listening on {}", socket.display()));
    ready(&socket);
    shutdown.await;
    logging::verbose("shutting down: finishing the requests in flight");
    let _ = stop_tx.send(true);
    match serving.await {
        Ok(r) => r.map_err(ServeError::Serve),
        Err(e) => Err(ServeError::Serve(Error::Internal(format!("the server task failed: {e}")))),
    }
}

/// `/metrics` on TCP; a failure to listen is logged and the daemon serves on without metrics.
async fn serve_metrics(server: &Server, port: u16, stop: impl Future<Output = ()> + Send + 'static) {
    let addrs: Vec<IpAddr> = match server.config.metrics_bind_address {
        Some(a) => vec![a],
        // Upstream's `:<port>`: every address, IPv6 and IPv4 where the kernel allows.
        None => vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::from([0, 0, 0, 0])],
    };
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpListener::bind(SocketAddr::new(addr, port)).await {
            Ok(listener) => {
                let router = server::metrics_router(server.metrics.clone());
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
                        logging::error(&format!("metrics listener failed: {e}"));
                    }
                });
                logging::verbose(&format!("metrics on {addr} port {port}"));
                return;
            }
            Err(e) => last = Some(format!("{addr} port {port}: {e}")),
        }
    }
    logging::error(&format!("cannot listen for metrics on {}", last.unwrap_or_default()));
}

/// Completes on SIGTERM or SIGINT. Must be called inside the runtime.
pub fn signals() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => logging::verbose("received SIGTERM"),
            _ = int.recv() => logging::verbose("received SIGINT"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_lines() {
        let run = |p: &str| Ok(Cli::Run { config: PathBuf::from(p) });
        assert_eq!(parse_args(&args(&[])), run(DEFAULT_PATH));
        assert_eq!(parse_args(&args(&["-config", "/a.json"])), run("/a.json"));
        assert_eq!(parse_args(&args(&["--config=/b.json"])), run("/b.json"));
        assert_eq!(parse_args(&args(&["--config", "/c.json", "rest", "-version"])), run("/c.json"));
        assert_eq!(parse_args(&args(&["-version"])), Ok(Cli::Version));
        assert_eq!(parse_args(&args(&["--version", "-config", "/x"])), Ok(Cli::Version));
        assert_eq!(parse_args(&args(&["-version=false"])), run(DEFAULT_PATH));
        assert_eq!(parse_args(&args(&["-h"])), Ok(Cli::Help));
        assert_eq!(parse_args(&args(&["-config"])), Err("flag needs an argument: -config".into()));
        assert_eq!(parse_args(&args(&["-cfg", "x"])), Err("flag provided but not defined: -cfg".into()));
    }

    #[test]
    fn file_wait() {
        let d = tempfile::tempdir().unwrap();
        assert!(wait_for_file(d.path(), Duration::ZERO, READINESS_POLL));
        assert!(!wait_for_file(&d.path().join("never"), Duration::from_millis(30), Duration::from_millis(10)));
    }
}
