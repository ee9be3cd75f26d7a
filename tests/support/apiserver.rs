//! A fake Kubernetes API server for the tests: pods, NetworkAttachmentDefinitions and events over
//! plain HTTP/1.1 on a loopback port, plus the test's controls (state, fault injection, hooks).
//!
//! This is a fake because no real kube-apiserver (nor etcd) can be installed on the test machines.
//! It speaks the real REST wire format, checked against the real `kubectl` and kube-rs in
//! tests/kube/apiserver.rs: the same paths, verbs and JSON documents (`PodList`, watch events as
//! newline-delimited `{"type":..,"object":..}` in a chunked body, `Status` objects for errors with
//! the real messages), discovery in the plain form a server without aggregated discovery or Table
//! output answers with, and a global resourceVersion bumped by every write.
//!
//! Served: core/v1 `pods` (+ `pods/status`), `k8s.cni.cncf.io/v1` `network-attachment-definitions`,
//! core/v1 `events` and `events.k8s.io/v1` `events`, each with GET, LIST (all namespaces and per
//! namespace), WATCH, POST, PUT, PATCH and DELETE; `namespaces` GET/LIST (synthesized: every
//! namespace exists). GET, LIST and WATCH also answer in the metadata-only forms a client asks for
//! with `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`.
//!
//! Deliberate simplifications (a real server differs here):
//! - no authentication, admission, validation, defaulting or `managedFields`; a pod created over
//!   HTTP gets `status: {phase: Pending}` (the real server also resets it), while
//!   [`ApiHandle::create_pod`] keeps the given status so a test can play the kubelet;
//! - `limit`/`continue` are accepted and ignored (every list is one page); LIST ignores
//!   `resourceVersion` and answers from the latest state;
//! - label selectors support equality and existence (`a=b`, `a!=b`, `a`, `!a`), set-based ones are
//!   refused with 400; field selectors support `=`, `==`, `!=` on the fields the real server indexes;
//! - strategic merge patch is applied as a JSON merge patch (no `$patch` directives, lists
//!   replaced); server-side apply is refused with 415; JSON patch has `add`, `remove`, `replace`, `test`;
//! - DELETE is immediate (no graceful deletion, no finalizers) and ignores DeleteOptions;
//! - the two event APIs are stored apart (the real server converts one into the other);
//! - a watch sends BOOKMARK events only as the end marker of `sendInitialEvents`; the event history
//!   is kept until [`ApiHandle::compact`], after which older resourceVersions get 410 Expired.

mod http;
mod store;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde_json::{Value, json};

use store::{ApiError, CSR, EVENT, EVENT_V1, Form, KINDS, NAD, POD, Part, Selector, State, Watch};

/// A request as the fake received it (for hooks).
#[derive(Clone, Debug)]
pub struct FakeRequest {
    pub method: String,
    /// The path, as sent.
    pub path: String,
    /// The raw query string without `?` (empty when none).
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeRequest {
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() { self.path.clone() } else { format!("{}?{}", self.path, self.query) }
    }

    /// The decoded value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<String> {
        self.query
            .split('&')
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .find(|(k, _)| http::percent_decode(k) == key)
            .map(|(_, v)| http::percent_decode(v))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter as Go's strconv.ParseBool reads it.
    fn flag(&self, key: &str) -> bool {
        matches!(self.param(key).as_deref(), Some("true" | "1" | "t" | "T" | "True" | "TRUE"))
    }
}

/// A response a hook or fault injection answers with instead of the server.
#[derive(Clone, Debug)]
pub struct FakeResponse {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection without answering (a connection reset for the client).
    pub hang_up: bool,
}

impl FakeResponse {
    pub fn json(code: u16, body: &Value) -> FakeResponse {
        let headers = vec![("Content-Type".into(), "application/json".into())];
        FakeResponse { code, headers, body: body.to_string().into_bytes(), hang_up: false }
    }

    /// A failure `Status` with the reason the real server uses for `code` (429 adds `Retry-After: 1`).
    pub fn status(code: u16, message: &str) -> FakeResponse {
        let status = store::status_object(code, store::code_names(code).0, message, json!({}));
        let mut r = FakeResponse::json(code, &status);
        if code == 429 {
            r.headers.push(("Retry-After".into(), "1".into()));
        }
        r
    }

    pub fn hang_up() -> FakeResponse {
        FakeResponse { code: 0, headers: Vec::new(), body: Vec::new(), hang_up: true }
    }
}

/// A test's hook: `Some` answers the request instead of the server.
pub type Hook = dyn Fn(&FakeRequest) -> Option<FakeResponse> + Send + Sync;

/// What the server does with a request.
enum Reply {
    Response(FakeResponse),
    Watch(Watch),
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply::Response(FakeResponse::json(200, &body))
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled after every write (and on stop) for the watches.
    changed: Condvar,
    hooks: Mutex<Vec<Arc<Hook>>>,
    stopping: AtomicBool,
    /// Open connections (clones), shut down by `stop` so no thread stays blocked on a read.
    conns: Mutex<HashMap<u64, TcpStream>>,
    addr: SocketAddr,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running fake; [`stop`](Self::stop)s on drop. Derefs to its [`ApiHandle`].
pub struct FakeApiServer {
    handle: ApiHandle,
    acceptor: Option<JoinHandle<()>>,
    /// The listening socket, valid while `acceptor` runs: `stop` shuts it down to wake the
    /// blocking accept even when the test created the server in another network namespace.
    listener_fd: std::os::fd::RawFd,
}

impl FakeApiServer {
    pub fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake apiserver on 127.0.0.1");
        let addr = listener.local_addr().expect("fake apiserver address");
        let shared = Shared {
            state: Mutex::new(State::new()),
            changed: Condvar::new(),
            hooks: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            addr,
        };
        let mut server = FakeApiServer { handle: ApiHandle(Arc::new(shared)), acceptor: None, listener_fd: -1 };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let shared = self.handle.0.clone();
        self.listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        self.acceptor = Some(std::thread::spawn(move || http::accept_loop(listener, shared)));
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.handle.0.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.0.addr
    }

    /// A handle on the state that outlives borrows, e.g. for use inside a hook.
    pub fn handle(&self) -> ApiHandle {
        self.handle.clone()
    }

    /// Writes `<dir>/kubeconfig` for this server (plain http, a dummy token, `current-context`).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\npreferences: {{}}\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            self.url()
        );
        let path = dir.join("kubeconfig");
        let tmp = dir.join(".kubeconfig.tmp");
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("renaming {} to kubeconfig: {e}", tmp.display()));
        path
    }

    /// Closes the port and every open connection (idle keep-alives and watches too) and joins the
    /// threads; the state stays readable. Afterwards connections to [`addr`](Self::addr) are refused.
    pub fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else { return };
        let shared = &self.handle.0;
        // Wakes the blocking accept (EINVAL) wherever the caller is; the listener stays open until
        // the accept loop sees `stopping`, so the fd cannot have been reused yet.
        // SAFETY: shutdown on a socket fd owned by the running accept loop.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        shared.stopping.store(true, Ordering::SeqCst);
        for conn in lock(&shared.conns).values() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        {
            let _state = lock(&shared.state);
            shared.changed.notify_all();
        }
        let _ = acceptor.join();
    }

    /// Serves again on the same port after [`stop`](Self::stop), with the same state.
    pub fn restart(&mut self) {
        assert!(self.acceptor.is_none(), "restart of a running fake apiserver");
        let addr = self.handle.0.addr;
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("rebinding the fake apiserver on {addr}: {e}"));
        self.handle.0.stopping.store(false, Ordering::SeqCst);
        self.serve(listener);
    }
}

impl Deref for FakeApiServer {
    type Target = ApiHandle;
    fn deref(&self) -> &ApiHandle {
        &self.handle
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop();
        // Hooks may hold an `ApiHandle`: dropping them frees the shared state.
        self.clear_hooks();
    }
}

/// The fake's state and controls, cloneable (e.g. into a hook).
#[derive(Clone)]
pub struct ApiHandle(Arc<Shared>);

impl ApiHandle {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.0.state)
    }

    /// Runs a write under the lock and wakes the watches.
    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state());
        self.0.changed.notify_all();
        out
    }

    fn expect_write(&self, what: &str, f: impl FnOnce(&mut State) -> Result<Value, ApiError>) -> Value {
        self.write(f).unwrap_or_else(|e| panic!("{what}: {}", e.message))
    }

    /// Stores a pod as given (status included, as if a kubelet had written it); fills namespace
    /// (`default` when absent), uid (when absent), creationTimestamp, resourceVersion. Returns it.
    pub fn create_pod(&self, pod: Value) -> Value {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        self.expect_write("creating pod", |st| st.create(POD, &ns, pod, false))
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<Value> {
        self.state().get(POD, ns, name).ok()
    }

    /// Changes a stored pod (spec and status alike) in one write: a MODIFIED event.
    pub fn update_pod(&self, ns: &str, name: &str, change: impl FnOnce(&mut Value)) -> Value {
        self.expect_write("updating pod", |st| {
            let old = st.get(POD, ns, name)?;
            let mut new = old.clone();
            change(&mut new);
            st.update(POD, old, new, Part::All)
        })
    }

    /// Every CertificateSigningRequest, in name order.
    pub fn csrs(&self) -> Vec<Value> {
        self.state().objects[CSR].values().cloned().collect()
    }

    /// Issues a certificate for an approved CertificateSigningRequest (what the signer
    /// controller of kube-controller-manager does): `status.certificate` = the PEM.
    pub fn issue_csr(&self, name: &str, certificate_pem: &str) -> Value {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(certificate_pem);
        self.expect_write("issuing certificate", |st| {
            let old = st.get(CSR, "", name)?;
            let mut new = old.clone();
            new["status"]["certificate"] = json!(b64);
            st.update(CSR, old, new, Part::All)
        })
    }

    /// Deletes a pod at once; returns it as deleted (with the deletion's resourceVersion).
    pub fn delete_pod(&self, ns: &str, name: &str) -> Option<Value> {
        self.write(|st| st.delete(POD, ns, name)).ok()
    }

    /// Stores a NetworkAttachmentDefinition; `config: None` leaves `spec` empty.
    pub fn create_nad(&self, ns: &str, name: &str, config: Option<&str>, annotations: &[(&str, &str)]) -> Value {
        let mut nad = json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                             "metadata": {"name": name, "namespace": ns}, "spec": {}});
        if !annotations.is_empty() {
            let map = annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            nad["metadata"]["annotations"] = Value::Object(map);
        }
        if let Some(config) = config {
            nad["spec"]["config"] = json!(config);
        }
        self.expect_write("creating network-attachment-definition", |st| st.create(NAD, ns, nad, false))
    }

    pub fn nad(&self, ns: &str, name: &str) -> Option<Value> {
        self.state().get(NAD, ns, name).ok()
    }

    pub fn delete_nad(&self, ns: &str, name: &str) -> Option<Value> {
        self.write(|st| st.delete(NAD, ns, name)).ok()
    }

    /// Every stored event of both APIs (`apiVersion` tells them apart), in the order of their last write.
    pub fn events(&self) -> Vec<Value> {
        let st = self.state();
        let mut events: Vec<Value> = st.objects[EVENT].values().chain(st.objects[EVENT_V1].values()).cloned().collect();
        events.sort_by_key(store::rv_of);
        events
    }

    /// Every request received so far: (method, path and query as sent).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// The next `n` requests (after the hooks) get a failure `Status` with `code` (500, 503, 429, ...).
    pub fn fail_next(&self, n: u32, code: u16) {
        self.state().fail_next = (n, code);
    }

    /// The next `n` writes of `pods/status` (PUT or PATCH) get 409 Conflict, whatever their resourceVersion.
    pub fn conflict_next_status_writes(&self, n: u32) {
        self.state().status_conflicts = n;
    }

    /// Adds a hook that sees every request first, without any lock held (so it may use an
    /// `ApiHandle`); the first hook answering `Some` wins.
    pub fn on_request(&self, hook: Box<Hook>) {
        lock(&self.0.hooks).push(Arc::from(hook));
    }

    pub fn clear_hooks(&self) {
        lock(&self.0.hooks).clear();
    }

    /// Forgets the watch history: watches from an older resourceVersion get 410 Expired.
    pub fn compact(&self) {
        self.state().compact();
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    /// Answers one request: hooks, injected faults, then the API.
    fn handle(&self, req: &FakeRequest) -> Reply {
        self.state().requests.push((req.method.clone(), req.path_and_query()));
        let hooks: Vec<Arc<Hook>> = lock(&self.0.hooks).clone();
        if let Some(r) = hooks.iter().find_map(|h| h(req)) {
            return Reply::Response(r);
        }
        let injected = {
            let mut st = self.state();
            let (left, code) = st.fail_next;
            st.fail_next.0 = left.saturating_sub(1);
            (left > 0).then_some(code)
        };
        if let Some(code) = injected {
            return Reply::Response(FakeResponse::status(code, &format!("fake apiserver: injected failure {code}")));
        }
        self.route(req).unwrap_or_else(|e| Reply::Response(FakeResponse::json(e.code, &e.status())))
    }

    fn route(&self, req: &FakeRequest) -> Result<Reply, ApiError> {
        let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        let discovery = match segs.as_slice() {
            ["version"] => json!({"major": "1", "minor": "30", "gitVersion": "v1.30.0",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2024-04-17T00:00:00Z", "goVersion": "go1.22.2", "compiler": "gc",
                "platform": "linux/amd64"}),
            ["api"] => json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs":
                [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.0.addr.to_string()}]}),
            ["apis"] => json!({"kind": "APIGroupList", "apiVersion": "v1",
                               "groups": groups().into_iter().map(api_group).collect::<Vec<_>>()}),
            ["apis", g] if groups().iter().any(|x| x == g) => api_group(g),
            ["api", "v1", "namespaces", rest @ ..] if rest.len() < 2 => return self.namespaces(req, rest.first()),
            ["api", v, rest @ ..] => return self.resource(req, "", v, rest),
            ["apis", g, v, rest @ ..] => return self.resource(req, g, v, rest),
            _ => return Err(ApiError::no_route()),
        };
        if req.method != "GET" {
            return Err(ApiError::method_not_allowed());
        }
        Ok(Reply::ok(discovery))
    }

    /// Namespaces are synthesized: every name exists and is Active; the list holds the usual
    /// system namespaces and every namespace an object lives in.
    fn namespaces(&self, req: &FakeRequest, name: Option<&&str>) -> Result<Reply, ApiError> {
        if req.method != "GET" {
            return Err(ApiError::method_not_allowed());
        }
        let namespace = |ns: &str| {
            json!({"kind": "Namespace", "apiVersion": "v1",
                   "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        };
        if let Some(ns) = name {
            return Ok(Reply::ok(namespace(ns)));
        }
        let st = self.state();
        let mut names: Vec<&str> = vec!["default", "kube-node-lease", "kube-public", "kube-system"];
        names.extend(
            st.objects.iter().flat_map(|objects| objects.keys().map(|(ns, _)| ns.as_str())).filter(|ns| !ns.is_empty()),
        );
        names.sort();
        names.dedup();
        let items: Vec<Value> = names.into_iter().map(namespace).collect();
        Ok(Reply::ok(json!({"kind": "NamespaceList", "apiVersion": "v1",
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items})))
    }

    fn resource(&self, req: &FakeRequest, group: &str, version: &str, rest: &[&str]) -> Result<Reply, ApiError> {
        let in_gv = |k: &store::Kind| k.group == group && k.version == version;
        if !KINDS.iter().any(in_gv) {
            return Err(ApiError::no_route());
        }
        let cluster_scoped = |plural: &str| KINDS.iter().any(|k| in_gv(k) && k.plural == plural && !k.namespaced);
        let (ns, plural, name, sub) = match *rest {
            [] if req.method == "GET" => return Ok(Reply::ok(resource_list(group, version))),
            [] => return Err(ApiError::method_not_allowed()),
            [plural] => (None, plural, None, None),
            [plural, name] if cluster_scoped(plural) => (None, plural, Some(name), None),
            [plural, name, sub] if cluster_scoped(plural) => (None, plural, Some(name), Some(sub)),
            ["namespaces", ns, plural] => (Some(ns), plural, None, None),
            ["namespaces", ns, plural, name] => (Some(ns), plural, Some(name), None),
            ["namespaces", ns, plural, name, sub] => (Some(ns), plural, Some(name), Some(sub)),
            _ => return Err(ApiError::no_route()),
        };
        let kind = KINDS.iter().position(|k| in_gv(k) && k.plural == plural).ok_or_else(ApiError::no_route)?;
        let k = &KINDS[kind];
        if ns.is_some() != k.namespaced && name.is_some() {
            return Err(ApiError::no_route());
        }
        let part = match sub {
            None => Part::Object,
            Some("status") if k.status => Part::Status,
            Some("approval") if k.approval => Part::Approval,
            Some(_) => return Err(ApiError::no_route()),
        };
        let sub = sub.is_some();
        if sub && matches!(req.method.as_str(), "PUT" | "PATCH") {
            let mut st = self.state();
            if st.status_conflicts > 0 {
                st.status_conflicts -= 1;
                return Err(ApiError::conflict(k, name.unwrap_or_default()));
            }
        }
        let (Some(name), ns) = (name, ns.unwrap_or_default()) else {
            return match (req.method.as_str(), ns) {
                ("GET", ns) => {
                    let sel = Selector::parse(k, req)?;
                    let st = self.state();
                    if req.flag("watch") {
                        return Ok(Reply::Watch(Watch::open(&st, kind, ns, sel, req)?));
                    }
                    match Form::of(req) {
                        Form::Full => Ok(Reply::ok(st.list(kind, ns, &sel))),
                        Form::MetaList => Ok(Reply::ok(store::partial_list(&st.list(kind, ns, &sel)))),
                        Form::Meta => Err(ApiError::not_acceptable()),
                    }
                }
                ("POST", Some(ns)) if k.namespaced => {
                    let body = serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_body(k, e))?;
                    let created = self.write(|st| st.create(kind, ns, body, true))?;
                    Ok(Reply::Response(FakeResponse::json(201, &created)))
                }
                ("POST", None) if !k.namespaced => {
                    let body = serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_body(k, e))?;
                    let created = self.write(|st| st.create(kind, "", body, true))?;
                    Ok(Reply::Response(FakeResponse::json(201, &created)))
                }
                _ => Err(ApiError::method_not_allowed()),
            };
        };
        let reply = match req.method.as_str() {
            "GET" => match Form::of(req) {
                Form::Full => self.state().get(kind, ns, name)?,
                Form::Meta => store::partial(&self.state().get(kind, ns, name)?),
                Form::MetaList => return Err(ApiError::not_acceptable()),
            },
            "PUT" => self.write(|st| st.replace(kind, ns, name, &req.body, part))?,
            "PATCH" => {
                let ctype = req.header("content-type").unwrap_or_default();
                self.write(|st| st.patch(kind, ns, name, ctype, &req.body, part))?
            }
            "DELETE" if !sub => {
                let deleted = self.write(|st| st.delete(kind, ns, name))?;
                if k.returns_deleted {
                    deleted
                } else {
                    let mut details = k.details(name);
                    details["uid"] = deleted["metadata"]["uid"].clone();
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
                }
            }
            _ => return Err(ApiError::method_not_allowed()),
        };
        Ok(Reply::ok(reply))
    }
}

fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = KINDS.iter().map(|k| k.group).filter(|g| !g.is_empty()).collect();
    g.sort();
    g.dedup();
    g
}

fn api_group(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv], "preferredVersion": gv})
}

fn resource_list(group: &str, version: &str) -> Value {
    let verbs = ["create", "delete", "get", "list", "patch", "update", "watch"];
    let mut resources = Vec::new();
    if group.is_empty() {
        resources.push(json!({"name": "namespaces", "singularName": "namespace", "namespaced": false,
                              "kind": "Namespace", "verbs": ["get", "list"], "shortNames": ["ns"]}));
    }
    for k in KINDS.iter().filter(|k| k.group == group && k.version == version) {
        let mut r = json!({"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
                           "verbs": verbs, "shortNames": k.short_names});
        if k.kind == "Pod" {
            r["categories"] = json!(["all"]);
        }
        resources.push(r);
        if k.status {
            resources.push(json!({"name": format!("{}/status", k.plural), "singularName": "",
                                  "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if k.approval {
            resources.push(json!({"name": format!("{}/approval", k.plural), "singularName": "",
                                  "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}
