//! The daemon's HTTP API on its unix socket (upstream `pkg/server/server.go`), with axum:
//! `POST /cni` (a runtime's operation through the shim), `POST /delegate` (one delegate for
//! hot-plug clients), `GET|POST /healthz`; 404 for other paths, 405 for other methods. The
//! Prometheus endpoint is a separate TCP listener ([`metrics_router`]).
//!
//! Each operation runs on the blocking pool (`spawn_blocking`): the multus core is synchronous.
//! At most `maxConcurrentRequests` run at once, the rest wait; the permit is taken before the
//! body is read and released when the work ends. Bodies above `maxRequestBytes` are refused with
//! 413, bodies that do not arrive within `requestReadTimeoutSeconds` with 408, and all bodies
//! being received share `maxInflightRequestBytes`; [`serve`] bounds connections and header time
//! and drains on shutdown with a deadline. Answers: 200 with `{"Result": <1.1.0 result>}` for ADD, 200 with an
//! empty body otherwise, and 400 with a CNI error object (`application/json`) on failure, so the
//! error's code reaches the shim (upstream 4.2.1 sent text; 4.2.4 started sending the object).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::net::UnixListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::{self, CNI_ENDPOINT, DELEGATE_ENDPOINT, HEALTH_ENDPOINT, METRICS_ENDPOINT, WIRE_RESULT_VERSION};
use super::daemon_config::DaemonConfig;
use super::metrics::{self, Metrics};
use super::request::{self, CniRequest, Endpoint};
use crate::cni::error::{CniError, Error, code};
use crate::cni::skel::Command;
use crate::cni::validate;
use crate::cni::{CniResult, Exec};
use crate::logging;
use crate::multus::conf::NetConf;
use crate::multus::delegate::Requests;
use crate::multus::kube::{Cluster, PodLookup};
use crate::multus::sandbox::Netns;
use crate::multus::{hotplug, ops};

/// Everything a request needs; shared by the handlers.
pub struct Server {
    pub config: Arc<DaemonConfig>,
    pub cluster: Arc<dyn Cluster + Send + Sync>,
    pub exec: Arc<dyn Exec>,
    /// The daemon's own CNI_PATH, for requests that carry none.
    pub cni_path: String,
    pub metrics: Arc<Metrics>,
    /// `maxConcurrentRequests`: taken before a body is read, held until its work has finished.
    permits: Arc<Semaphore>,
    /// `maxInflightRequestBytes`: one permit per byte of the bodies being received.
    body_bytes: Arc<Semaphore>,
    /// Set while one request returns freed memory to the kernel.
    trimming: AtomicBool,
    /// Requests started so far: a trim waits until this has not moved for [`TRIM_AFTER_IDLE`].
    started: AtomicU64,
}

/// How long an idle thread of the blocking pool (where requests run) lives on: the tokio
/// runtime's `thread_keep_alive` (tokio's default is 10 s).
pub const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// How long the daemon must have been without requests before it returns freed memory to the
/// kernel: longer than [`BLOCKING_KEEP_ALIVE`], so a burst's threads have exited and handed their
/// malloc caches (tcache) back, and its connections and buffers are gone. Measured after a
/// 200-pod burst: a trim while the threads lived left 5.3 MB "in use" of 85 KB live data.
pub const TRIM_AFTER_IDLE: Duration = Duration::from_secs(3);

impl Server {
    pub fn new(
        config: DaemonConfig,
        cluster: Arc<dyn Cluster + Send + Sync>,
        exec: Arc<dyn Exec>,
        cni_path: String,
    ) -> Arc<Server> {
        let permits = Arc::new(Semaphore::new(config.max_concurrent_requests));
        let body_bytes = Arc::new(Semaphore::new(config.max_inflight_request_bytes.max(config.max_request_bytes)));
        Arc::new(Server {
            config: Arc::new(config),
            cluster,
            exec,
            cni_path,
            metrics: Arc::default(),
            permits,
            body_bytes,
            trimming: AtomicBool::new(false),
            started: AtomicU64::new(0),
        })
    }

    /// Runs one request's work on the blocking pool; the permit is released when the work ends,
    /// not when the client goes away, so work a client abandoned still counts.
    fn work(
        &self,
        permit: OwnedSemaphorePermit,
        endpoint: Endpoint,
        req: &api::Request,
    ) -> Result<Option<Vec<u8>>, Error> {
        let outcome = self.process(endpoint, req);
        drop(permit);
        outcome
    }

    /// Once no request holds a permit any more, gives the memory of a burst back to the kernel
    /// (glibc keeps freed heap for reuse otherwise). Only one caller trims at a time.
    fn trim_when_idle(&self) {
        if self.permits.available_permits() == self.config.max_concurrent_requests
            && self.trimming.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            release_free_memory();
            self.trimming.store(false, Ordering::SeqCst);
        }
    }

    /// Runs one request to the end (blocking: delegates are processes).
    fn process(&self, endpoint: Endpoint, req: &api::Request) -> Result<Option<Vec<u8>>, Error> {
        let override_config = |c: &[u8]| self.config.override_request_config(c);
        let r = request::extract(endpoint, req, &override_config, &self.cni_path)
            .and_then(|r| validate::netns(r.command, &r.invocation.netns).map(|()| r))
            .and_then(|mut r| request::recover_pod_uid(&mut r, &*self.cluster).map(|()| r))
            .inspect_err(|e| logging::error(&format!("{} request refused: {e}", kind(endpoint))))?;
        logging::verbose(&format!("{} starting {} request {}", r.command.as_str(), kind(endpoint), r.describe()));
        let outcome = match endpoint {
            Endpoint::Cni => self.cni(&r),
            Endpoint::Delegate => self.delegate(&r, req.interface_attributes.clone().unwrap_or_default()),
        };
        match &outcome {
            Ok(body) => logging::verbose(&format!(
                "{} finished {} request {}, result: {:?}",
                r.command.as_str(),
                kind(endpoint),
                r.describe(),
                body.as_deref().map(String::from_utf8_lossy).unwrap_or_default()
            )),
            Err(e) => logging::error(&format!(
                "{} finished {} request {}, err: {e}",
                r.command.as_str(),
                kind(endpoint),
                r.describe()
            )),
        }
        outcome.map_err(|e| e.context(format!("{} ERRORED", r.describe())))
    }

    fn cni(&self, r: &CniRequest) -> Result<Option<Vec<u8>>, Error> {
        let conf = NetConf::parse(&r.config)?;
        let (inv, cluster, exec) = (&r.invocation, &*self.cluster, self.exec.clone());
        match r.command {
            Command::Add => {
                let result = ops::add(&conf, inv, cluster, &Netns, exec).map_err(|e| {
                    e.context(format!("error configuring pod [{}/{}] networking", r.k8s.namespace, r.k8s.name))
                })?;
                wire_result(&CniResult::from_value(result, &conf.cni_version)?).map(Some)
            }
            Command::Del => ops::del(&conf, inv, cluster, exec).map(|()| None),
            Command::Check => ops::check(&conf, inv, cluster, exec).map(|()| None),
            Command::Gc => ops::gc(&conf, inv, cluster, exec).map(|()| None),
            Command::Status => ops::status(&conf, inv, cluster, exec).map(|()| None),
            Command::Version => Err(Error::InvalidEnv("unknown cmd type: VERSION".into())),
        }
    }

    fn delegate(&self, r: &CniRequest, attrs: api::InterfaceAttributes) -> Result<Option<Vec<u8>>, Error> {
        let settings = &self.config.settings;
        let requests = Requests {
            ips: attrs.ips,
            mac: (!attrs.mac.is_empty()).then_some(attrs.mac),
            cni_args: attrs.cni_args,
            ..Requests::default()
        };
        let d = hotplug::load(&r.config, requests)?;
        let (inv, exec) = (&r.invocation, self.exec.clone());
        match r.command {
            Command::Add => {
                // The pod must exist when there is a cluster to ask (upstream `GetPod`).
                let pod = match self.cluster.pod(&r.k8s)? {
                    PodLookup::Found(pod) => Some(pod),
                    _ => None,
                };
                let result =
                    hotplug::add(settings, inv, &d, pod.as_ref(), &*self.cluster, &Netns, exec).map_err(|e| {
                        e.context(format!("error configuring pod [{}/{}] networking", r.k8s.namespace, r.k8s.name))
                    })?;
                wire_result(&result).map(Some)
            }
            Command::Del => {
                self.cluster.teardown_pod(&r.k8s)?;
                hotplug::del(settings, inv, &d, exec).map(|()| None)
            }
            Command::Check => hotplug::check(settings, inv, &d, exec).map(|()| None),
            Command::Status => hotplug::status(settings, inv, &d, exec).map(|()| None),
            other => Err(Error::InvalidEnv(format!("unknown cmd type: {}", other.as_str()))),
        }
    }

    async fn handle(self: Arc<Self>, endpoint: Endpoint, http: HttpRequest) -> Response {
        self.started.fetch_add(1, Ordering::SeqCst);
        let response = self.clone().answer(endpoint, http).await;
        if self.permits.available_permits() == self.config.max_concurrent_requests {
            // Counted when this request ends: the last to end of a burst need not be the last
            // to have started.
            let seen = self.started.load(Ordering::SeqCst);
            // One timer per request that ends with none in flight; only the last one of a burst
            // trims. On the blocking pool: malloc_trim walks the heap, no work for a runtime worker.
            tokio::spawn(async move {
                tokio::time::sleep(TRIM_AFTER_IDLE).await;
                if self.started.load(Ordering::SeqCst) == seen {
                    let _ = tokio::task::spawn_blocking(move || self.trim_when_idle()).await;
                }
            });
        }
        response
    }

    async fn answer(self: Arc<Self>, endpoint: Endpoint, http: HttpRequest) -> Response {
        let refused = |status: StatusCode, e: CniError| {
            logging::error(&format!("{} request refused: {}", kind(endpoint), e.msg));
            failure(status, e)
        };
        // The permit comes first: a body is read only for a request that may run now.
        let permit = self.permits.clone().acquire_owned().await.expect("the request semaphore is never closed");
        let (max, timeout) = (self.config.max_request_bytes, self.config.request_read_timeout);
        let declared = declared_length(&http);
        if declared.is_some_and(|n| n > max as u64) {
            return refused(StatusCode::PAYLOAD_TOO_LARGE, too_large(max));
        }
        // The bytes it may take, from the budget shared by every connection.
        let share = declared.map_or(max, |n| n as usize).clamp(1, max) as u32;
        let budget = self.body_bytes.clone().acquire_many_owned(share).await.expect("the byte budget is never closed");
        let body = match tokio::time::timeout(timeout, read_body(http, share as usize)).await {
            Ok(Ok(b)) => b,
            Ok(Err((status, e))) => return refused(status, e),
            Err(_) => {
                let msg = format!("the request body did not arrive within {}s", timeout.as_secs());
                return refused(StatusCode::REQUEST_TIMEOUT, CniError::new(code::IO_FAILURE, msg, ""));
            }
        };
        let req: Result<api::Request, _> = serde_json::from_slice(&body);
        drop(body);
        drop(budget);
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                let e = CniError::new(code::DECODING_FAILURE, format!("invalid request: {e}"), "");
                return refused(StatusCode::BAD_REQUEST, e);
            }
        };
        let version = serde_json::from_slice::<serde_json::Value>(&req.config)
            .ok()
            .and_then(|c| c.get("cniVersion").and_then(|v| v.as_str()).map(str::to_string));
        let server = self.clone();
        match tokio::task::spawn_blocking(move || server.work(permit, endpoint, &req)).await {
            Ok(Ok(Some(json))) => {
                ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response()
            }
            Ok(Ok(None)) => StatusCode::OK.into_response(),
            Ok(Err(e)) => {
                let mut cni = e.to_cni();
                cni.cni_version = version;
                failure(StatusCode::BAD_REQUEST, cni)
            }
            Err(join) => failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                CniError::new(code::INTERNAL, format!("request processing failed: {join}"), ""),
            ),
        }
    }
}

fn kind(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Cni => "CNI",
        Endpoint::Delegate => "delegate",
    }
}

/// `{"Result": ...}` with the result in the wire version.
fn wire_result(result: &CniResult) -> Result<Vec<u8>, Error> {
    Ok(api::Response { result: Some(result.to_value(WIRE_RESULT_VERSION)?) }.to_json())
}

fn failure(status: StatusCode, e: CniError) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], api::error_body(&e))
        .into_response()
}

fn too_large(max: usize) -> CniError {
    CniError::new(code::INTERNAL, format!("request body exceeds the limit of {max} bytes"), "")
}

fn declared_length(http: &HttpRequest) -> Option<u64> {
    http.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Gives freed heap back to the kernel (glibc's allocator keeps it for reuse otherwise).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The body, or why it is refused: 413 beyond `max` bytes (checked while reading; the caller
/// checks Content-Length first).
async fn read_body(http: HttpRequest, max: usize) -> Result<axum::body::Bytes, (StatusCode, CniError)> {
    match Limited::new(http.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err((StatusCode::PAYLOAD_TOO_LARGE, too_large(max)))
        }
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            CniError::new(code::IO_FAILURE, format!("failed to read the request body: {e}"), ""),
        )),
    }
}

async fn cni(State(s): State<Arc<Server>>, http: HttpRequest) -> Response {
    s.handle(Endpoint::Cni, http).await
}

async fn delegate(State(s): State<Arc<Server>>, http: HttpRequest) -> Response {
    s.handle(Endpoint::Delegate, http).await
}

async fn healthz() -> StatusCode {
    StatusCode::OK
}

async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n").into_response()
}

async fn not_found(http: HttpRequest) -> StatusCode {
    logging::error(&format!("http not found: {} {}", http.method(), http.uri()));
    StatusCode::NOT_FOUND
}

async fn count(State(s): State<Arc<Server>>, http: HttpRequest, next: Next) -> Response {
    let handler = metrics::handler_label(http.uri().path());
    let method = http.method().as_str().to_string();
    let response = next.run(http).await;
    s.metrics.record(handler, response.status().as_u16(), &method);
    response
}

/// The socket API's routes.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route(CNI_ENDPOINT, post(cni).fallback(method_not_allowed))
        .route(DELEGATE_ENDPOINT, post(delegate).fallback(method_not_allowed))
        .route(HEALTH_ENDPOINT, get(healthz).post(healthz).head(method_not_allowed).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(server.clone(), count))
        .with_state(server)
}

/// `GET /metrics` for the TCP listener.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        METRICS_ENDPOINT,
        get(move || {
            let metrics = metrics.clone();
            async move {
                let text = metrics.render();
                ([(header::CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE))], text)
            }
        }),
    )
}

/// Recreates the socket directory, mode 0700 (upstream removes it with everything in it first).
pub fn prepare_socket_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.parent().is_none() {
        return Err(Error::InvalidConfig(format!("refusing to use {} as the socket directory", dir.display())));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("failed to remove the old socket directory", dir, e)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("failed to create the socket directory", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("failed to set the mode of the socket directory", dir, e))
}

/// Listens on `<dir>/multus.sock`, mode 0600. Needs a tokio runtime.
pub fn listen(dir: &Path) -> Result<(UnixListener, PathBuf), Error> {
    use std::os::unix::fs::PermissionsExt;
    let path = api::socket_path(dir);
    let listener = UnixListener::bind(&path).map_err(|e| Error::io("failed to listen on", &path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("failed to set the mode of", &path, e))?;
    Ok((listener, path))
}

/// Serves until `shutdown` completes, then stops accepting, removes the socket and lets the
/// requests in flight finish for at most `shutdownTimeoutSeconds`.
///
/// At most `maxConnections` connections are served at once (the rest wait in the backlog); a
/// client gets `requestReadTimeoutSeconds` for its headers (hyper's header timeout, which also
/// closes idle connections) and again for its body (`Server::handle`).
pub async fn serve(
    listener: UnixListener,
    socket: PathBuf,
    server: Arc<Server>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let config = server.config.clone();
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.request_read_timeout);
    let service = TowerToHyperService::new(router(server));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot.expect("the connection semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of fds or memory: back off instead of spinning on the error.
                    logging::error(&format!("accept on {} failed: {e}", socket.display()));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let removed = std::fs::remove_file(&socket);
    if tokio::time::timeout(config.shutdown_timeout, graceful.shutdown()).await.is_err() {
        logging::error(&format!(
            "requests still in flight after {}s: exiting without them",
            config.shutdown_timeout.as_secs()
        ));
    }
    removed.map_err(|e| Error::io("failed to remove", &socket, e))
}
