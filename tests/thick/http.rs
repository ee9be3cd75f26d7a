//! The socket API by hand, the way upstream's Go shim and hot-plug clients speak it, with
//! `curl --unix-socket`: health, 404/405, `/cni` and `/delegate` requests in upstream's shape,
//! bad requests, and the metrics listener.

use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::{Daemon, bin_dir, bridge, curl, daemon_config, files_in, shim_conf, write};
use crate::support::{CNI_BIN, Node, test_plugin_dir};

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// A `/cni` request body as upstream's shim marshals it (env map, base64 stdin).
fn cni_request(node: &Node, cmd: &str, container: &str, conf: &Value) -> Vec<u8> {
    json!({"env": {
        "CNI_ARGS": format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container};K8S_POD_INFRA_CONTAINER_ID={container}"),
        "CNI_COMMAND": cmd, "CNI_CONTAINERID": container, "CNI_IFNAME": "eth0", "CNI_NETNS": node.pod.path(),
        "CNI_PATH": CNI_BIN, "HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        "config": b64(conf)})
    .to_string()
    .into_bytes()
}

#[test]
fn health_not_found_and_wrong_methods() {
    let node = Node::new();
    let daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let sock = daemon.socket();
    for (method, path, status) in [
        ("GET", "/healthz", 200),
        ("POST", "/healthz", 200),
        ("PUT", "/healthz", 405),
        ("DELETE", "/healthz", 405),
        ("GET", "/cni", 405),
        ("PUT", "/cni", 405),
        ("GET", "/delegate", 405),
        ("GET", "/", 404),
        ("POST", "/cni/", 404),
        ("GET", "/metrics", 404),
    ] {
        let r = curl(&sock, method, path, None);
        assert_eq!(r.status, status, "{method} {path}: {r:?}");
        if status == 200 {
            assert_eq!(r.body, "", "{method} {path}");
        }
        if status == 405 {
            assert_eq!(r.body, "Method not allowed\n");
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&daemon.socket_dir), 0o700);
    assert_eq!(mode(&sock), 0o600);
}

#[test]
fn cni_requests_in_upstreams_shape() {
    let node = Node::new();
    let daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let list = node.path("net.d-src/10-cbr.conflist");
    write(
        &list,
        &json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")]}),
    );
    let conf = shim_conf(&node, "0.3.1", json!({"clusterNetwork": list}));

    let r = curl(&daemon.socket(), "POST", "/cni", Some(&cni_request(&node, "ADD", "raw1", &conf)));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.content_type, "application/json");
    let doc = r.json();
    assert_eq!(doc.as_object().unwrap().keys().collect::<Vec<_>>(), ["Result"]);
    let result = &doc["Result"];
    assert_eq!(result["cniVersion"], "1.1.0", "the wire carries 1.1.0 whatever the config says");
    assert_eq!(result["ips"], json!([{"interface": 2, "address": "10.99.0.2/24", "gateway": "10.99.0.1"}]));
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"]);

    let r = curl(&daemon.socket(), "POST", "/cni", Some(&cni_request(&node, "CHECK", "raw1", &conf)));
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{r:?}");
    let r = curl(&daemon.socket(), "POST", "/cni", Some(&cni_request(&node, "DEL", "raw1", &conf)));
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{r:?}");
    assert_eq!(node.pod.link_names(), vec!["lo"]);
    assert!(node.ipam_ips("cbr").is_empty());
    assert_eq!(files_in(&node.path("multus/results")), Vec::<String>::new());
}

#[test]
fn delegate_requests_for_hot_plug() {
    let node = Node::new();
    let record = node.path("record.jsonl");
    // /delegate runs with the daemon's own multus settings (binDir, cniDir).
    let daemon =
        Daemon::start(&node, &daemon_config(&node, json!({"cniDir": node.path("multus"), "binDir": bin_dir()})));
    let hot = json!({"cniVersion": "1.0.0", "name": "hot", "type": "bridge", "bridge": "tbr1",
        "capabilities": {"ips": true, "mac": true}, "ipam": {"type": "static"}});
    let request = |cmd: &str, attrs: Value| {
        let mut r = json!({"env": {"CNI_COMMAND": cmd, "CNI_CONTAINERID": "hot1", "CNI_NETNS": node.pod.path(),
            "CNI_IFNAME": "net5", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=hot1;K8S_POD_UID=u1"},
            "config": b64(&hot)});
        if !attrs.is_null() {
            r["interfaceAttributes"] = attrs;
        }
        r.to_string().into_bytes()
    };
    let attrs = json!({"ips": ["10.77.0.5/24"], "mac": "c2:b0:57:49:47:f1", "cni-args": null});
    let r = curl(&daemon.socket(), "POST", "/delegate", Some(&request("ADD", attrs)));
    assert_eq!(r.status, 200, "{r:?}");
    let result = &r.json()["Result"];
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(result["ips"][0]["address"], "10.77.0.5/24");
    assert_eq!(node.pod.addrs("net5"), vec!["10.77.0.5/24"]);
    assert_eq!(node.pod.link("net5").unwrap()["address"], "c2:b0:57:49:47:f1");
    assert!(!node.path("multus/hot1").exists(), "no scratch cache for hot-plugged interfaces");

    for cmd in ["CHECK", "STATUS"] {
        let r = curl(&daemon.socket(), "POST", "/delegate", Some(&request(cmd, Value::Null)));
        assert_eq!((r.status, r.body.as_str()), (200, ""), "{cmd}: {r:?}");
    }
    let r = curl(&daemon.socket(), "POST", "/delegate", Some(&request("GC", Value::Null)));
    assert_eq!(r.status, 400);
    assert!(r.json()["msg"].as_str().unwrap().contains("unknown cmd type: GC"), "{r:?}");
    // The interface name is taken now: a second ADD is refused before the plugin runs.
    let r = curl(&daemon.socket(), "POST", "/delegate", Some(&request("ADD", Value::Null)));
    assert_eq!(r.status, 400);
    assert!(r.json()["msg"].as_str().unwrap().contains("interface name net5 already exists"), "{r:?}");
    let r = curl(&daemon.socket(), "POST", "/delegate", Some(&request("DEL", Value::Null)));
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{r:?}");
    assert_eq!(node.pod.link_names(), vec!["lo"]);

    // cni-args land in the delegate's `args.cni`; the request's CNI_PATH finds the plugin.
    let rec = json!({"cniVersion": "1.0.0", "name": "rec", "type": "cni-recorder", "recordFile": record});
    let body = json!({"env": {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "hot2", "CNI_NETNS": node.pod.path(),
        "CNI_IFNAME": "net7", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=hot2", "CNI_PATH": test_plugin_dir()},
        "config": b64(&rec), "interfaceAttributes": {"cni-args": {"foo": "bar"}}});
    let r = curl(&daemon.socket(), "POST", "/delegate", Some(body.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{r:?}");
    let call: Value = serde_json::from_str(std::fs::read_to_string(&record).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(call["config"]["args"], json!({"cni": {"foo": "bar"}}));
    assert_eq!(call["ifname"], "net7");
}

#[test]
fn bad_requests_are_refused_and_the_daemon_stays_up() {
    let node = Node::new();
    let daemon = Daemon::start(&node, &daemon_config(&node, json!({"logLevel": "verbose"})));
    let sock = daemon.socket();
    let conf = shim_conf(&node, "1.0.0", json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")]}));
    let good: Value = serde_json::from_slice(&cni_request(&node, "ADD", "bad", &conf)).unwrap();
    let without = |key: &str| {
        let mut v = good.clone();
        v["env"].as_object_mut().unwrap().remove(key);
        v.to_string().into_bytes()
    };
    let with = |key: &str, value: &str| {
        let mut v = good.clone();
        v["env"][key] = json!(value);
        v.to_string().into_bytes()
    };
    let mut not_json_config = good.clone();
    not_json_config["config"] = json!(base64::engine::general_purpose::STANDARD.encode("not json"));
    let huge = vec![b' '; 2 << 20];
    let cases: Vec<(Vec<u8>, u16, u64, &str)> = vec![
        (b"{\"env\":".to_vec(), 400, 6, "invalid request: EOF while parsing"),
        (b"[1,2]".to_vec(), 400, 6, "invalid request"),
        (br#"{"config":"***"}"#.to_vec(), 400, 6, "config is not base64"),
        (without("CNI_CONTAINERID"), 400, 4, "could not extract the CNI command args: missing CNI_CONTAINERID"),
        (without("CNI_NETNS"), 400, 4, "missing CNI_NETNS"),
        (without("CNI_ARGS"), 400, 4, "missing CNI_ARGS"),
        (with("CNI_COMMAND", "FOO"), 400, 4, "unknown cmd type: FOO"),
        (with("CNI_ARGS", "K8S_POD_NAMESPACE=ns;oops;K8S_POD_NAME=p"), 400, 4, "invalid CNI_ARG 'oops'"),
        (with("CNI_ARGS", "K8S_POD_NAME=p"), 400, 4, "missing K8S_POD_NAMESPACE"),
        (not_json_config.to_string().into_bytes(), 400, 6, "failed to unmarshall CNI config"),
        (huge, 413, 999, "request body exceeds the limit of 1048576 bytes"),
    ];
    for (body, status, code, needle) in cases {
        let r = curl(&sock, "POST", "/cni", Some(&body));
        assert_eq!(r.status, status, "{needle}: {r:?}");
        assert_eq!(r.content_type, "application/json", "{needle}");
        let e = r.json();
        assert_eq!(e["code"], code, "{needle}: {e}");
        assert!(e["msg"].as_str().unwrap().contains(needle), "{e} lacks {needle:?}");
        assert_eq!(curl(&sock, "GET", "/healthz", None).status, 200, "the daemon answers after {needle:?}");
    }
    assert_eq!(node.pod.link_names(), vec!["lo"], "nothing was attached");
    let log = std::fs::read_to_string(node.path("daemon.log")).unwrap();
    for line in [
        "[error] CNI request refused: could not extract the CNI command args: missing CNI_CONTAINERID",
        "[error] CNI request refused: request body exceeds the limit of 1048576 bytes",
    ] {
        assert!(log.contains(line), "{line:?} not logged: {log}");
    }
}

#[test]
fn metrics_count_requests_by_handler_code_and_method() {
    let node = Node::new();
    let daemon =
        Daemon::start(&node, &daemon_config(&node, json!({"metricsPort": 9091, "metricsBindAddress": "127.0.0.1"})));
    let sock = daemon.socket();
    for _ in 0..3 {
        assert_eq!(curl(&sock, "GET", "/healthz", None).status, 200);
    }
    assert_eq!(curl(&sock, "POST", "/cni", Some(b"{")).status, 400);
    assert_eq!(curl(&sock, "GET", "/cni", None).status, 405);
    assert_eq!(curl(&sock, "GET", "/nope", None).status, 404);
    // The listener is in the node namespace, where the daemon runs.
    let out = node.node.enter(|| Command::new("curl").args(["-s", "http://127.0.0.1:9091/metrics"]).output().unwrap());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "# TYPE multus_server_request_total counter",
        // three probes of ours, one from the daemon's own startup check, one from the harness
        "multus_server_request_total{code=\"200\",handler=\"/healthz\",method=\"get\"} 4",
        "multus_server_request_total{code=\"400\",handler=\"/cni\",method=\"post\"} 1",
        "multus_server_request_total{code=\"405\",handler=\"/cni\",method=\"get\"} 1",
        "multus_server_request_total{code=\"404\",handler=\"NotFound\",method=\"get\"} 1",
        "# TYPE process_resident_memory_bytes gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
    }
    assert!(text.contains("handler=\"/healthz\",method=\"post\""), "the harness's POST probe: {text}");

    // The independent judge: the reference Python client's text-format parser reads every family.
    let families = prometheus_parse(&text);
    for (name, kind) in [
        ("multus_server_request", "counter"),
        ("process_cpu_seconds", "counter"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        let f = families.get(name).unwrap_or_else(|| panic!("{name} not parsed: {families:?}"));
        assert_eq!(f["type"], kind, "{name}");
        assert!(!f["samples"].as_array().unwrap().is_empty(), "{name} has no samples");
    }
    let open_fds = families["process_open_fds"]["samples"][0]["value"].as_f64().unwrap();
    let max_fds = families["process_max_fds"]["samples"][0]["value"].as_f64().unwrap();
    assert!(open_fds >= 3.0 && open_fds < max_fds, "{open_fds} of {max_fds}");
}

/// The text parsed by `prometheus_client.parser` (PyPI's reference client, installed into the
/// tools venv by scripts/install-test-deps.sh): family name → {type, samples: [{name, labels, value}]}.
fn prometheus_parse(text: &str) -> serde_json::Map<String, Value> {
    use std::io::Write;
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/grpc-venv/bin/python");
    assert!(py.exists(), "{} missing: run scripts/install-test-deps.sh", py.display());
    let script = "import json, sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\n\
                  print(json.dumps({f.name: {'type': f.type, 'samples': [{'name': s.name, 'labels': s.labels, \
                  'value': s.value} for s in f.samples]} for f in parse(sys.stdin.read())}))";
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused the text: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
