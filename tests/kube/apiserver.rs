//! The fake API server (tests/support/apiserver.rs) checked against real clients: the `kubectl` on
//! the machine, kube-rs's client and event recorder, and kube's `WatchEvent` for raw watch streams.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::WatchEvent;
use serde_json::{Value, json};

use crate::support::apiserver::{FakeApiServer, FakeResponse};

/// `kubectl` with a kubeconfig for the fake and HOME/KUBECACHEDIR in a temp dir (nothing under /root).
struct Kubectl {
    home: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(server: &FakeApiServer) -> Kubectl {
        let home = tempfile::tempdir().expect("tempdir");
        let kubeconfig = server.write_kubeconfig(home.path());
        Kubectl { home, kubeconfig }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", self.home.path())
            .env("KUBECACHEDIR", self.home.path().join("cache"))
            .output()
            .expect("running kubectl: run scripts/install-test-deps.sh")
    }

    /// Runs kubectl, panicking with its stderr on failure; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
        String::from_utf8(out.stdout).expect("kubectl output is UTF-8")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&full)).expect("kubectl -o json output")
    }
}

fn pod(ns: &str, name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name},
                     "annotations": {"k8s.v1.cni.cncf.io/networks": "macvlan1"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": "10.1.0.5"}
    })
}

/// One request on its own connection: status code, headers (lower-case names) and JSON body.
fn http_full(server: &FakeApiServer, method: &str, path: &str, ctype: &str, body: &str) -> (u16, String, Value) {
    let mut s = TcpStream::connect(server.addr()).expect("connecting to the fake apiserver");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nAccept: application/json\r\n\
         Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad status line {head}"));
    (code, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn http(server: &FakeApiServer, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let (code, _, v) = http_full(server, method, path, "application/json", &body);
    (code, v)
}

/// A raw watch: the chunked body read event by event.
struct WatchStream {
    r: BufReader<TcpStream>,
}

impl WatchStream {
    fn open(server: &FakeApiServer, path: &str) -> WatchStream {
        let s = TcpStream::connect(server.addr()).expect("connecting to the fake apiserver");
        // Guards against a hang if an expected event never comes (the read then fails the test).
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut r = BufReader::new(s);
        write!(r.get_mut(), "GET {path} HTTP/1.1\r\nHost: fake\r\nAccept: application/json\r\n\r\n").unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200 OK"), "watch {path}: {head}");
        assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "watch {path}: {head}");
        WatchStream { r }
    }

    /// The next event, or `None` when the server ended the stream.
    fn next(&mut self) -> Option<Value> {
        let mut line = String::new();
        loop {
            let mut size = String::new();
            if self.r.read_line(&mut size).ok()? == 0 {
                return None;
            }
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            let mut chunk = vec![0; size + 2];
            self.r.read_exact(&mut chunk).ok()?;
            if size == 0 {
                return None;
            }
            line.push_str(std::str::from_utf8(&chunk[..size]).unwrap());
            if line.ends_with('\n') {
                let event: Value = serde_json::from_str(&line).expect("a watch event is one JSON line");
                // kube's own type must accept every event the fake sends.
                serde_json::from_value::<WatchEvent<Pod>>(event.clone()).expect("kube parses the watch event");
                return Some(event);
            }
        }
    }
}

fn not_found(what: &str, name: &str, group: Option<&str>) -> Value {
    let mut details = json!({"name": name});
    if let Some(g) = group {
        details["group"] = json!(g);
    }
    details["kind"] = json!(what);
    let qualified = group.map(|g| format!("{what}.{g}")).unwrap_or(what.to_string());
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{qualified} \"{name}\" not found"), "reason": "NotFound", "details": details, "code": 404})
}

fn conflict(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("Operation cannot be fulfilled on pods \"{name}\": the object has been modified; \
                               please apply your changes to the latest version and try again"),
           "reason": "Conflict", "details": {"name": name, "kind": "pods"}, "code": 409})
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().expect("resourceVersion").parse().expect("numeric resourceVersion")
}

fn has_request(server: &FakeApiServer, method: &str, path_and_query: &str) -> bool {
    server.requests().iter().any(|(m, p)| m == method && p == path_and_query)
}

#[test]
fn kubectl_get_pod_prints_the_stored_pod() {
    let server = FakeApiServer::start();
    let kubectl = Kubectl::new(&server);
    let stored = server.create_pod(pod("ns", "p", "node1"));
    assert_eq!(kubectl.json(&["get", "pod", "-n", "ns", "p"]), stored);
    assert!(has_request(&server, "GET", "/api/v1/namespaces/ns/pods/p"), "{:?}", server.requests());
    // The server filled what a real one fills on creation.
    let meta = &stored["metadata"];
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rv(&stored), server.resource_version());
}

#[test]
fn kubectl_lists_the_nads_of_one_namespace() {
    let server = FakeApiServer::start();
    let kubectl = Kubectl::new(&server);
    let conf = r#"{"cniVersion":"1.0.0","type":"macvlan","master":"eth0"}"#;
    let a = server.create_nad("ns", "a", Some(conf), &[]);
    let b = server.create_nad("ns", "b", None, &[("k8s.v1.cni.cncf.io/resourceName", "intel.com/sriov")]);
    server.create_nad("other", "c", Some(conf), &[]);
    let list = kubectl.json(&["get", "net-attach-def", "-n", "ns"]);
    assert_eq!(list["items"], json!([a, b]));
    assert_eq!(a["spec"], json!({"config": conf}));
    assert_eq!(b["spec"], json!({}));
    assert!(has_request(
        &server,
        "GET",
        "/apis/k8s.cni.cncf.io/v1/namespaces/ns/network-attachment-definitions?limit=500"
    ));
    let one = kubectl.json(&["get", "network-attachment-definition", "-n", "other", "c"]);
    assert_eq!(Some(one), server.nad("other", "c"));
}

#[test]
fn kubectl_get_pods_in_all_namespaces() {
    let server = FakeApiServer::start();
    let kubectl = Kubectl::new(&server);
    server.create_pod(pod("other", "q", "node2"));
    server.create_pod(pod("ns", "p", "node1"));
    server.create_pod(pod("default", "a", "node1"));
    let out = kubectl.ok(&["get", "pods", "-A"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header[..2], ["NAMESPACE", "NAME"], "{out}");
    let rows: Vec<(String, String)> = lines
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[1].to_string())
        })
        .collect();
    let want = [("default", "a"), ("ns", "p"), ("other", "q")].map(|(n, p)| (n.to_string(), p.to_string()));
    assert_eq!(rows, want);
    assert!(has_request(&server, "GET", "/api/v1/pods?limit=500"), "{:?}", server.requests());
}

#[test]
fn kubectl_annotate_and_patch_write_through_patch() {
    let server = FakeApiServer::start();
    let kubectl = Kubectl::new(&server);
    let before = server.create_pod(pod("ns", "p", "node1"));

    kubectl.ok(&["annotate", "pod", "-n", "ns", "p", "k8s.v1.cni.cncf.io/network-status=[]"]);
    assert!(has_request(&server, "PATCH", "/api/v1/namespaces/ns/pods/p?fieldManager=kubectl-annotate"));
    let mut want = before.clone();
    want["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"] = json!("[]");
    want["metadata"]["resourceVersion"] = json!((rv(&before) + 1).to_string());
    assert_eq!(server.pod("ns", "p").unwrap(), want);

    // Strategic merge (kubectl patch's default) and JSON patch.
    kubectl.ok(&["patch", "pod", "-n", "ns", "p", "-p", r#"{"metadata":{"labels":{"tier":"db"}}}"#]);
    let json_patch = r#"[{"op":"remove","path":"/metadata/annotations/k8s.v1.cni.cncf.io~1networks"}]"#;
    kubectl.ok(&["patch", "pod", "-n", "ns", "p", "--type=json", "-p", json_patch]);
    want["metadata"]["labels"]["tier"] = json!("db");
    want["metadata"]["annotations"].as_object_mut().unwrap().remove("k8s.v1.cni.cncf.io/networks");
    want["metadata"]["resourceVersion"] = json!((rv(&before) + 3).to_string());
    assert_eq!(server.pod("ns", "p").unwrap(), want);

    // The status subresource takes the status and ignores the spec; the main resource the reverse.
    // (Raw HTTP: Debian's kubectl 1.20 has no `patch --subresource`.)
    let status_patch = r#"{"spec":{"nodeName":"elsewhere"},"status":{"phase":"Succeeded"}}"#;
    let (code, _, _) = http_full(
        &server,
        "PATCH",
        "/api/v1/namespaces/ns/pods/p/status",
        "application/merge-patch+json",
        status_patch,
    );
    assert_eq!(code, 200);
    kubectl.ok(&["patch", "pod", "-n", "ns", "p", "--type=merge", "-p", r#"{"status":{"phase":"Failed"}}"#]);
    want["status"]["phase"] = json!("Succeeded");
    want["metadata"]["resourceVersion"] = json!((rv(&before) + 4).to_string());
    assert_eq!(server.pod("ns", "p").unwrap(), want, "the second patch changed nothing, so nothing was written");
}

#[test]
fn kubectl_get_missing_pod_reports_not_found() {
    let server = FakeApiServer::start();
    let kubectl = Kubectl::new(&server);
    let out = kubectl.run(&["get", "pod", "-n", "ns", "missing"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        r#"Error from server (NotFound): pods "missing" not found"#
    );
    assert_eq!(
        http(&server, "GET", "/api/v1/namespaces/ns/pods/missing", &Value::Null),
        (404, not_found("pods", "missing", None))
    );
    let path = "/apis/k8s.cni.cncf.io/v1/namespaces/ns/network-attachment-definitions/x";
    let nad_missing = not_found("network-attachment-definitions", "x", Some("k8s.cni.cncf.io"));
    assert_eq!(http(&server, "GET", path, &Value::Null), (404, nad_missing));

    let status = |code: u16, reason: &str, message: &str| {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
               "reason": reason, "details": {}, "code": code})
    };
    let unknown = status(404, "NotFound", "the server could not find the requested resource");
    assert_eq!(http(&server, "GET", "/apis/apps/v1/namespaces/ns/deployments", &Value::Null), (404, unknown.clone()));
    assert_eq!(http(&server, "GET", "/api/v1/namespaces/ns/secrets", &Value::Null), (404, unknown));
    let not_allowed =
        status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    assert_eq!(http(&server, "POST", "/api/v1/pods", &pod("ns", "p", "n")), (405, not_allowed.clone()));
    assert_eq!(http(&server, "DELETE", "/api/v1/namespaces/ns/pods/p/status", &Value::Null), (405, not_allowed));
}

#[test]
fn http_create_fills_metadata_and_rejects_duplicates() {
    let server = FakeApiServer::start();
    let mut body = pod("", "p", "node1");
    body["metadata"].as_object_mut().unwrap().remove("namespace");
    let (code, created) = http(&server, "POST", "/api/v1/namespaces/ns/pods", &body);
    assert_eq!(code, 201);
    assert_eq!(Some(created.clone()), server.pod("ns", "p"));
    assert_eq!(created["metadata"]["namespace"], "ns");
    assert_eq!(created["status"], json!({"phase": "Pending"}), "a created pod's status is the server's");
    let (code, again) = http(&server, "POST", "/api/v1/namespaces/ns/pods", &body);
    assert_eq!(code, 409);
    assert_eq!(again["reason"], "AlreadyExists");
    assert_eq!(again["message"], r#"pods "p" already exists"#);
    let (code, wrong_ns) = http(&server, "POST", "/api/v1/namespaces/other/pods", &pod("ns", "x", "n"));
    assert_eq!((code, wrong_ns["reason"].as_str()), (400, Some("BadRequest")));

    let (code, deleted) = http(&server, "DELETE", "/api/v1/namespaces/ns/pods/p", &Value::Null);
    assert_eq!((code, deleted["metadata"]["name"].as_str()), (200, Some("p")), "pods answer with the deleted pod");
    assert_eq!(server.pod("ns", "p"), None);
    let nad = server.create_nad("ns", "n", None, &[]);
    let (code, status) = http(
        &server,
        "DELETE",
        "/apis/k8s.cni.cncf.io/v1/namespaces/ns/network-attachment-definitions/n",
        &Value::Null,
    );
    let details = json!({"name": "n", "group": "k8s.cni.cncf.io", "kind": "network-attachment-definitions",
                         "uid": nad["metadata"]["uid"]});
    assert_eq!(code, 200);
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
    );
}

#[test]
fn watch_sees_added_modified_deleted_in_order() {
    let server = FakeApiServer::start();
    let (code, list) = http(&server, "GET", "/api/v1/namespaces/ns/pods", &Value::Null);
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "PodList");
    let since = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut watch = WatchStream::open(
        &server,
        &format!(
            "/api/v1/namespaces/ns/pods?watch=true&resourceVersion={since}&allowWatchBookmarks=true&timeoutSeconds=300"
        ),
    );
    server.create_pod(pod("other", "elsewhere", "node1"));
    let created = server.create_pod(pod("ns", "p", "node1"));
    let modified = server.update_pod("ns", "p", |p| p["status"]["podIP"] = json!("10.1.0.9"));
    let deleted = server.delete_pod("ns", "p").unwrap();
    assert_eq!(watch.next(), Some(json!({"type": "ADDED", "object": created})));
    assert_eq!(watch.next(), Some(json!({"type": "MODIFIED", "object": modified})));
    assert_eq!(watch.next(), Some(json!({"type": "DELETED", "object": deleted})));
    assert!(rv(&created) < rv(&modified) && rv(&modified) < rv(&deleted));

    // A watch without resourceVersion starts with the current state; timeoutSeconds ends it.
    let mut watch = WatchStream::open(&server, "/api/v1/pods?watch=1&timeoutSeconds=1");
    let elsewhere = server.pod("other", "elsewhere").unwrap();
    assert_eq!(watch.next(), Some(json!({"type": "ADDED", "object": elsewhere})));
    assert_eq!(watch.next(), None);
}

#[test]
fn watch_with_field_selector_sees_pods_enter_and_leave() {
    let server = FakeApiServer::start();
    let since = server.resource_version();
    let path = format!("/api/v1/pods?watch=true&fieldSelector=spec.nodeName%3Dnode1&resourceVersion={since}");
    let mut watch = WatchStream::open(&server, &path);
    server.create_pod(pod("ns", "a", "node2"));
    let b = server.create_pod(pod("ns", "b", "node1"));
    let a = server.update_pod("ns", "a", |p| p["spec"]["nodeName"] = json!("node1"));
    let b_moved = server.update_pod("ns", "b", |p| p["spec"]["nodeName"] = json!("node2"));
    assert_eq!(watch.next(), Some(json!({"type": "ADDED", "object": b})));
    assert_eq!(watch.next(), Some(json!({"type": "ADDED", "object": a})));
    assert_eq!(watch.next(), Some(json!({"type": "DELETED", "object": b_moved})));

    // The same selection in a LIST, and a streaming list (sendInitialEvents) ending with its bookmark.
    let (_, list) = http(&server, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode1&limit=500", &Value::Null);
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a"]);
    assert_eq!(list["items"][0].get("kind"), None, "built-in list items carry no kind");
    let path = "/api/v1/pods?watch=true&fieldSelector=spec.nodeName%3Dnode1&sendInitialEvents=true\
                &allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan";
    let mut watch = WatchStream::open(&server, path);
    assert_eq!(watch.next(), Some(json!({"type": "ADDED", "object": a})));
    let bookmark = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": server.resource_version().to_string(),
                          "creationTimestamp": null, "annotations": {"k8s.io/initial-events-end": "true"}}});
    assert_eq!(watch.next(), Some(json!({"type": "BOOKMARK", "object": bookmark})));

    let (code, bad) = http(&server, "GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx", &Value::Null);
    assert_eq!((code, bad["message"].as_str()), (400, Some("field label not supported: spec.bogus")));
}

#[test]
fn watch_from_a_compacted_resource_version_is_expired() {
    let server = FakeApiServer::start();
    let old = server.resource_version();
    server.create_pod(pod("ns", "p", "node1"));
    server.compact();
    let mut watch = WatchStream::open(&server, &format!("/api/v1/namespaces/ns/pods?watch=true&resourceVersion={old}"));
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("too old resource version: {old} ({})", old + 2), "reason": "Expired", "code": 410});
    assert_eq!(watch.next(), Some(json!({"type": "ERROR", "object": status})));
    assert_eq!(watch.next(), None);
}

#[test]
fn status_writes_conflict_on_a_stale_resource_version() {
    let server = FakeApiServer::start();
    let stale = server.create_pod(pod("ns", "p", "node1"));
    let current = server.update_pod("ns", "p", |p| p["metadata"]["labels"]["x"] = json!("y"));
    let path = "/api/v1/namespaces/ns/pods/p/status";
    assert_eq!(http(&server, "PUT", path, &stale), (409, conflict("p")));

    let mut body = current.clone();
    body["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"] = json!("[{\"name\":\"kindnet\"}]");
    body["status"]["podIP"] = json!("10.1.0.7");
    body["spec"]["nodeName"] = json!("ignored");
    let (code, written) = http(&server, "PUT", path, &body);
    assert_eq!(code, 200);
    let mut want = body.clone();
    want["spec"] = current["spec"].clone();
    want["metadata"]["resourceVersion"] = json!((rv(&current) + 1).to_string());
    assert_eq!(written, want);
    assert_eq!(server.pod("ns", "p"), Some(want.clone()));

    server.conflict_next_status_writes(1);
    let (code, _) = http(&server, "PUT", path, &want);
    assert_eq!(code, 409, "injected conflict");
    let merge = r#"{"status":{"phase":"Running"}}"#;
    let (code, _, _) = http_full(&server, "PATCH", path, "application/merge-patch+json", merge);
    assert_eq!(code, 200, "the injected conflict is used up");
    let (code, _, refused) = http_full(&server, "PATCH", path, "application/apply-patch+yaml", merge);
    assert_eq!((code, refused["reason"].as_str()), (415, Some("UnsupportedMediaType")), "no server-side apply");
    let mut unconditional = want.clone();
    unconditional["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    unconditional["status"]["phase"] = json!("Succeeded");
    let (code, written) = http(&server, "PUT", path, &unconditional);
    assert_eq!((code, written["status"]["phase"].as_str()), (200, Some("Succeeded")));
}

#[test]
fn fault_injection_and_request_hooks() {
    let server = FakeApiServer::start();
    server.create_pod(pod("ns", "p", "node1"));
    let path = "/api/v1/namespaces/ns/pods/p";

    server.fail_next(2, 503);
    for _ in 0..2 {
        let (code, status) = http(&server, "GET", path, &Value::Null);
        assert_eq!(
            (code, status["reason"].as_str(), status["kind"].as_str()),
            (503, Some("ServiceUnavailable"), Some("Status"))
        );
    }
    assert_eq!(http(&server, "GET", path, &Value::Null).0, 200);
    server.fail_next(1, 429);
    let (code, head, _) = http_full(&server, "GET", path, "application/json", "");
    assert_eq!(code, 429);
    assert!(head.contains("retry-after: 1"), "{head}");

    // A hook deletes the pod when the first GET of it arrives: that GET already sees it gone.
    let handle = server.handle();
    let fired = AtomicBool::new(false);
    server.on_request(Box::new(move |req| {
        if req.method == "GET" && req.path == "/api/v1/namespaces/ns/pods/p" && !fired.swap(true, Ordering::SeqCst) {
            handle.delete_pod("ns", "p");
        }
        None
    }));
    server.on_request(Box::new(|req| match req.path.as_str() {
        "/reset" => Some(FakeResponse::hang_up()),
        "/teapot" => Some(FakeResponse::status(418, "short and stout")),
        _ => None,
    }));
    assert_eq!(http(&server, "GET", path, &Value::Null), (404, not_found("pods", "p", None)));
    assert_eq!(http(&server, "GET", "/teapot", &Value::Null).0, 418);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET /reset HTTP/1.1\r\nHost: fake\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert_eq!(s.read_to_end(&mut buf).unwrap_or(0), 0, "hang_up closes without answering");
    server.clear_hooks();
    assert!(has_request(&server, "GET", "/reset"));
}

#[test]
fn stop_closes_the_port_and_open_connections() {
    let mut server = FakeApiServer::start();
    server.create_pod(pod("ns", "p", "node1"));
    // An idle keep-alive connection that has served one request, and an open watch.
    let mut idle = TcpStream::connect(server.addr()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    idle.write_all(b"GET /version HTTP/1.1\r\nHost: fake\r\n\r\n").unwrap();
    let mut r = BufReader::new(idle.try_clone().unwrap());
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    assert_eq!(first, "HTTP/1.1 200 OK\r\n");
    let mut watch = WatchStream::open(&server, "/api/v1/pods?watch=true");
    assert_eq!(watch.next().unwrap()["type"], "ADDED");

    server.stop();
    let refused = TcpStream::connect(server.addr()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(watch.next(), None);
    let mut rest = String::new();
    r.read_to_string(&mut rest).expect("the idle connection reaches its end");
    assert!(rest.ends_with('}'), "only the rest of the /version answer: {rest}");

    server.restart();
    assert_eq!(http(&server, "GET", "/api/v1/namespaces/ns/pods/p", &Value::Null).0, 200, "state kept across restart");
}

#[test]
fn events_of_both_apis_are_stored_and_listed() {
    let server = FakeApiServer::start();
    let kubectl = Kubectl::new(&server);
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "p.17a", "namespace": "ns"},
        "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p", "apiVersion": "v1"},
        "reason": "AddedInterface", "message": "Add net1 [10.1.0.5/24] from ns/macvlan1", "type": "Normal",
        "source": {"component": "multus"}});
    let (code, created) = http(&server, "POST", "/api/v1/namespaces/ns/events", &event);
    assert_eq!(code, 201);
    let listed = kubectl.json(&["get", "events", "-n", "ns"]);
    assert_eq!(listed["items"], json!([created]));
    let (_, selected) = http(&server, "GET", "/api/v1/events?fieldSelector=involvedObject.name%3Dq", &Value::Null);
    assert_eq!(selected["items"], json!([]));

    let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "p.17b", "namespace": "ns"},
        "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "multus", "reportingInstance": "node1",
        "action": "Add", "reason": "NoNetworkFound", "type": "Warning",
        "regarding": {"kind": "Pod", "namespace": "ns", "name": "p"}});
    let (code, created_v1) = http(&server, "POST", "/apis/events.k8s.io/v1/namespaces/ns/events", &v1);
    assert_eq!(code, 201);
    assert_eq!(server.events(), vec![created, created_v1]);
}

/// A kube-rs client from the fake's kubeconfig, as a kube-rs user builds one.
async fn kube_rs_client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The metadata-only forms (`PartialObjectMetadata`), as kube-rs asks for them: what the daemon's
/// pod watch and every pod lookup use.
#[test]
fn kube_rs_reads_metadata_only_get_list_and_watch() {
    use futures::StreamExt;
    let server = FakeApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path());
    let stored = server.create_pod(pod("ns", "p", "node1"));
    server.create_pod(pod("ns", "q", "node2"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = kube_rs_client(&kubeconfig).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "ns");
        let meta = pods.get_metadata("p").await.unwrap();
        assert_eq!(serde_json::to_value(&meta.metadata).unwrap(), stored["metadata"]);
        assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");
        assert!(pods.get_metadata_opt("missing").await.unwrap().is_none());
        let on_node1 = Api::<Pod>::all(client.clone())
            .list_metadata(&ListParams::default().fields("spec.nodeName=node1"))
            .await
            .unwrap();
        let names: Vec<_> = on_node1.items.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["p"]);
        // A metadata watch sees a pod that lands on the node with its annotations, nothing else.
        let cfg = kube::runtime::watcher::Config::default().fields("spec.nodeName=node1");
        let mut events = Box::pin(kube::runtime::metadata_watcher(Api::<Pod>::all(client), cfg));
        let mut seen = Vec::new();
        while let Some(ev) = events.next().await {
            match ev.unwrap() {
                kube::runtime::watcher::Event::InitApply(p) => seen.push(p.metadata.name.unwrap()),
                kube::runtime::watcher::Event::InitDone => break,
                _ => {}
            }
        }
        assert_eq!(seen, ["p"]);
        let mut moved = pod("ns", "r", "node1");
        moved["metadata"]["annotations"] = json!({"k8s.v1.cni.cncf.io/networks": "macvlan1"});
        server.create_pod(moved);
        let applied = loop {
            if let kube::runtime::watcher::Event::Apply(p) = events.next().await.unwrap().unwrap() {
                break p;
            }
        };
        assert_eq!(applied.metadata.name.as_deref(), Some("r"));
        assert_eq!(applied.metadata.annotations.unwrap()["k8s.v1.cni.cncf.io/networks"], "macvlan1");
        assert_eq!(applied.types.unwrap().api_version, "meta.k8s.io/v1");
    });
    // Asked for one object in the list form (or a list in the object form): 406, as the real server.
    let mut req = TcpStream::connect(server.addr()).unwrap();
    let accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    write!(
        req,
        "GET /api/v1/namespaces/ns/pods/p HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    req.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 406"), "{answer}");
}

#[test]
fn kube_rs_client_reads_and_writes_through_the_fake() {
    let server = FakeApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path());
    let stored = server.create_pod(pod("ns", "p", "node1"));
    server.create_pod(pod("ns", "q", "node2"));
    server.create_nad("ns", "macvlan1", Some(r#"{"cniVersion":"1.0.0","type":"macvlan"}"#), &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = kube_rs_client(&kubeconfig).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "ns");

        let got = pods.get("p").await.unwrap();
        assert_eq!(serde_json::to_value(&got).unwrap(), stored);
        assert!(pods.get_opt("missing").await.unwrap().is_none());
        let on_node1 =
            Api::<Pod>::all(client.clone()).list(&ListParams::default().fields("spec.nodeName=node1")).await.unwrap();
        let names: Vec<_> = on_node1.items.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["p"]);

        // The thin plugin's network-status write: a stale replace conflicts, a fresh one lands.
        server.update_pod("ns", "p", |p| p["status"]["podIP"] = json!("10.1.0.6"));
        let mut status = got.clone();
        status
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("k8s.v1.cni.cncf.io/network-status".into(), "[]".into());
        let err =
            pods.replace_status("p", &PostParams::default(), serde_json::to_vec(&status).unwrap()).await.unwrap_err();
        match err {
            kube::Error::Api(e) => assert_eq!(
                (e.code, e.reason.as_str(), e.message),
                (409, "Conflict", conflict("p")["message"].as_str().unwrap().to_string())
            ),
            other => panic!("expected a conflict, got {other}"),
        }
        let fresh = pods.get("p").await.unwrap();
        status.metadata.resource_version = fresh.metadata.resource_version.clone();
        pods.replace_status("p", &PostParams::default(), serde_json::to_vec(&status).unwrap()).await.unwrap();
        let annotations = &server.pod("ns", "p").unwrap()["metadata"]["annotations"];
        assert_eq!(annotations["k8s.v1.cni.cncf.io/network-status"], "[]");
        let patch = json!({"metadata": {"annotations": {"k8s.v1.cni.cncf.io/network-status": "[{}]"}}});
        pods.patch_status("p", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        assert_eq!(
            server.pod("ns", "p").unwrap()["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"],
            "[{}]"
        );

        // NetworkAttachmentDefinitions as dynamic objects.
        let ar = ApiResource {
            group: "k8s.cni.cncf.io".into(),
            version: "v1".into(),
            api_version: "k8s.cni.cncf.io/v1".into(),
            kind: "NetworkAttachmentDefinition".into(),
            plural: "network-attachment-definitions".into(),
        };
        let nads: Api<DynamicObject> = Api::namespaced_with(client.clone(), "ns", &ar);
        let nad = nads.get("macvlan1").await.unwrap();
        assert_eq!(nad.data["spec"]["config"], r#"{"cniVersion":"1.0.0","type":"macvlan"}"#);
        let deleted = nads.delete("macvlan1", &DeleteParams::default()).await.unwrap();
        assert!(deleted.is_right(), "a custom resource's delete answers with a Status");
        assert_eq!(server.nad("ns", "macvlan1"), None);

        // kube-runtime's event recorder: a create, then a merge patch of the same event.
        let reporter = kube::runtime::events::Reporter { controller: "multus".into(), instance: Some("node1".into()) };
        let recorder = kube::runtime::events::Recorder::new(client.clone(), reporter);
        let reference = ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("ns".into()),
            name: Some("p".into()),
            ..Default::default()
        };
        let ev = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: "AddedInterface".into(),
            note: Some("Add net1 [10.1.0.5/24] from ns/macvlan1".into()),
            action: "Add".into(),
            secondary: None,
        };
        recorder.publish(&ev, &reference).await.unwrap();
        recorder.publish(&ev, &reference).await.unwrap();
    });
    let events = server.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(events[0]["series"]["count"], 2);
    assert_eq!(events[0]["regarding"]["name"], "p");
}
