//! Property-based tests over every parser of the wire formats and files we read: the multus net
//! conf, plugin configs and conflists, results of every version and their conversions, the
//! networks annotation, the daemon's requests and daemon-config, the shim's config, the scratch
//! cache and libcni's result cache, device-info files.
//!
//! For any input: no panic; a refusal is an error with a CNI code; and what parsed serializes to
//! a document that parses to the same thing (serialize → parse → serialize is a fixed point).
//! Inputs are JSON built from the formats' own vocabulary (keys, versions, addresses, names) so
//! the generator reaches deep into each parser, plus raw bytes and strings. Case counts are
//! bounded (`CASES`) so the whole file runs in seconds.

use std::path::Path;

use multus::cni::error::Error;
use multus::cni::version::ALL;
use multus::cni::{CniResult, NetworkConfigList};
use multus::multus::conf::NetConf;
use proptest::prelude::*;
use serde_json::{Map, Value};

const CASES: u32 = 1024;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

/// Every code a refusal may carry: the specification's, ours (999) and plugin-specific (≥ 100).
fn assert_code(e: &Error) {
    let c = e.code();
    assert!(matches!(c, 1..=7 | 11 | 50 | 51 | 999) || c >= 100, "code {c} for {e}");
    let obj = e.to_cni();
    assert_eq!(obj.code, c);
    let back: multus::cni::CniError = serde_json::from_str(&obj.to_json()).expect("the error object is JSON");
    assert_eq!(back, obj);
}

const KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "plugins",
    "delegates",
    "clusterNetwork",
    "defaultNetworks",
    "kubeconfig",
    "logFile",
    "logLevel",
    "logToStderr",
    "logOptions",
    "runtimeConfig",
    "capabilities",
    "readinessindicatorfile",
    "namespaceIsolation",
    "globalNamespaces",
    "systemNamespaces",
    "multusNamespace",
    "retryDeleteOnError",
    "auxiliaryCNIChainName",
    "confDir",
    "cniDir",
    "binDir",
    "delegateTimeoutSeconds",
    "rollbackTimeoutSeconds",
    "disableCheck",
    "disableGC",
    "ipam",
    "dns",
    "interfaces",
    "ips",
    "routes",
    "ip4",
    "ip6",
    "ip",
    "gateway",
    "address",
    "interface",
    "mac",
    "sandbox",
    "mtu",
    "dst",
    "gw",
    "nameservers",
    "domain",
    "search",
    "options",
    "env",
    "config",
    "interfaceAttributes",
    "Conf",
    "ConfList",
    "Name",
    "Bytes",
    "ifnameRequest",
    "macRequest",
    "ipRequest",
    "default-route",
    "deviceID",
    "resourceName",
    "kind",
    "containerId",
    "ifName",
    "networkName",
    "result",
    "socketDir",
    "chrootDir",
    "metricsPort",
    "maxConcurrentRequests",
    "maxRequestBytes",
    "multusConfigFile",
    "daemonSocketDir",
    "namespace",
    "interfaceRequest",
    "portMappings",
    "pci-address",
    "pci",
    "version",
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

const WORDS: &[&str] = &[
    "0.1.0",
    "0.2.0",
    "0.3.0",
    "0.3.1",
    "0.4.0",
    "1.0.0",
    "1.1.0",
    "9.9.9",
    "",
    "bridge",
    "macvlan",
    "multus",
    "multus-shim",
    "host-local",
    "cbr",
    "net1",
    "eth0",
    "default",
    "kube-system",
    "10.1.2.3",
    "10.1.2.3/24",
    "fd00::1",
    "fd00::1/64",
    "0.0.0.0/0",
    "::/0",
    "10.1.2.1",
    "4",
    "6",
    "aa:bb:cc:dd:ee:ff",
    "/var/run/netns/x",
    "ADD",
    "DEL",
    "CHECK",
    "GC",
    "STATUS",
    "VERSION",
    "c1",
    "auto",
    "true",
    "cniCacheV1",
    "e30=",
    "eyJ0eXBlIjoiYiJ9",
    "default/net1@eth1",
    "ns/a,b",
    "[{\"name\":\"a\"}]",
    "../x",
    "/abs",
    "K8S_POD_NAME=p;K8S_POD_NAMESPACE=n",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(|s| Value::String(s.to_string())),
        1 => ".{0,12}".prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => (-3i64..70000).prop_map(Value::from),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        1 => Just(Value::Null),
    ]
}

/// JSON in the formats' vocabulary: objects with their keys, lists, leaves.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            2 => proptest::collection::vec((proptest::sample::select(KEYS), inner.clone()), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
            1 => proptest::collection::vec(inner, 0..4).prop_map(Value::Array),
        ]
    })
}

/// An object, most of the time with a `cniVersion` and a `type` so the parsers get past the first check.
fn doc() -> impl Strategy<Value = Value> {
    (
        json(),
        proptest::sample::select(ALL),
        proptest::sample::select(&["bridge", "multus", "host-local"][..]),
        any::<bool>(),
    )
        .prop_map(|(v, version, kind, seed)| {
            let mut m = match v {
                Value::Object(m) => m,
                other => {
                    let mut m = Map::new();
                    m.insert("plugins".into(), Value::Array(vec![other]));
                    m
                }
            };
            if seed {
                m.entry("cniVersion").or_insert(Value::String(version.to_string()));
                m.entry("type").or_insert(Value::String(kind.to_string()));
                m.entry("name").or_insert(Value::String("net".into()));
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn net_conf(v in doc()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        match NetConf::parse_settings(&bytes) {
            Ok(c) => {
                let again = NetConf::parse_settings(&serde_json::to_vec(&c.raw).unwrap()).expect("its own raw parses");
                prop_assert_eq!(again, c);
            }
            Err(e) => assert_code(&e),
        }
        if let Err(e) = NetConf::parse(&bytes) {
            assert_code(&e);
        }
    }

    #[test]
    fn plugin_config_and_conflist(v in doc(), raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        match multus::cni::config::PluginConfig::from_value(v.clone()) {
            Ok(p) => {
                let again = multus::cni::config::PluginConfig::from_bytes(&p.to_bytes()).expect("its own bytes parse");
                prop_assert_eq!(again, p);
            }
            Err(e) => assert_code(&e),
        }
        match NetworkConfigList::from_bytes(&serde_json::to_vec(&v).unwrap()) {
            Ok(l) => {
                let again = NetworkConfigList::from_value(Value::Object(l.raw.clone())).expect("its own raw parses");
                prop_assert_eq!((&again.name, &again.cni_version, &again.plugins), (&l.name, &l.cni_version, &l.plugins));
            }
            Err(e) => assert_code(&e),
        }
        if let Err(e) = NetworkConfigList::from_bytes(&raw) {
            assert_code(&e);
        }
    }

    /// Any result that parses converts to every version or refuses with a code, and each
    /// conversion is a fixed point of serialize → parse → serialize.
    #[test]
    fn results_of_every_version_and_their_conversions(v in doc(), version in proptest::sample::select(ALL)) {
        let Ok(r) = CniResult::from_value(v, version).map_err(|e| assert_code(&e)) else { return Ok(()) };
        for to in ALL {
            match r.to_value(to) {
                Ok(doc) => {
                    let back = CniResult::from_value(doc.clone(), to).expect("our own result parses");
                    prop_assert_eq!(back.to_value(to).expect("converts again"), doc);
                }
                Err(e) => assert_code(&e),
            }
        }
    }

    #[test]
    fn networks_annotation(text in ".{0,40}", v in json(), ns in "[a-z]{1,8}") {
        for input in [text, v.to_string()] {
            match multus::multus::annotation::parse_networks(&input, &ns) {
                Ok(selections) => {
                    for s in selections {
                        prop_assert!(!s.name.is_empty(), "{:?} from {:?}", s, input);
                    }
                }
                Err(e) => assert_code(&e),
            }
        }
    }

    /// The daemon's request documents: decode → encode → decode is the identity, and every
    /// request extracts or refuses with a code.
    #[test]
    fn daemon_requests(v in json(), env in proptest::collection::btree_map(
        proptest::sample::select(KEYS).prop_map(str::to_string),
        proptest::sample::select(WORDS).prop_map(str::to_string), 0..8), config in doc()) {
        use multus::thick::api::Request;
        use multus::thick::request::{Endpoint, extract};
        for candidate in [v, serde_json::json!({"env": env, "config": base64_of(&config)})] {
            let Ok(req) = serde_json::from_value::<Request>(candidate) else { continue };
            let again: Request = serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).expect("our encoding decodes");
            prop_assert_eq!(&again, &req);
            for endpoint in [Endpoint::Cni, Endpoint::Delegate] {
                if let Err(e) = extract(endpoint, &req, &|c: &[u8]| Ok(c.to_vec()), "/opt/cni/bin") {
                    assert_code(&e);
                }
            }
        }
    }

    #[test]
    fn daemon_config(v in doc()) {
        use multus::thick::daemon_config::DaemonConfig;
        match DaemonConfig::parse(&serde_json::to_vec(&v).unwrap()) {
            Ok(c) => {
                let again = DaemonConfig::parse(&serde_json::to_vec(&c.raw).unwrap()).expect("its own raw parses");
                prop_assert_eq!(again, c);
            }
            Err(e) => assert_code(&e),
        }
    }

    #[test]
    fn shim_config(v in doc()) {
        if let Err(e) = multus::thick::shim::ShimConf::parse(&serde_json::to_vec(&v).unwrap()) {
            assert_code(&e);
        }
    }

    /// The scratch cache, ours or Go multus's: decode → encode → decode is the identity.
    #[test]
    fn scratch_cache(items in proptest::collection::vec(doc(), 0..3), names in proptest::collection::vec("[a-z0-9]{0,6}", 3)) {
        let entries: Vec<Value> = items
            .iter()
            .zip(&names)
            .map(|(conf, name)| serde_json::json!({"Name": name, "Bytes": base64_of(conf), "ConfList": conf.get("plugins").map(|p| serde_json::json!({"plugins": p})).unwrap_or(Value::Null)}))
            .collect();
        match multus::multus::scratch::decode(&serde_json::to_vec(&entries).unwrap(), "1.0.0") {
            Ok(delegates) => {
                let again = multus::multus::scratch::decode(&multus::multus::scratch::encode(&delegates), "1.0.0")
                    .expect("our encoding decodes");
                prop_assert_eq!(again, delegates);
            }
            Err(e) => assert_code(&e),
        }
    }

    /// libcni's result cache file: read → encode → read is the identity.
    #[test]
    fn libcni_cache_file(v in doc(), result in doc()) {
        use multus::cni::cache::{self, Cached};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("net-c1-eth0");
        let mut m = v.as_object().cloned().unwrap_or_default();
        if m.len() % 2 == 0 {
            m.insert("kind".into(), Value::String("cniCacheV1".into()));
            m.insert("containerId".into(), Value::String("c1".into()));
            m.insert("config".into(), Value::String(base64_of(&result)));
            m.insert("ifName".into(), Value::String("eth0".into()));
            m.insert("networkName".into(), Value::String("net".into()));
            m.insert("result".into(), result);
        }
        std::fs::write(&file, serde_json::to_vec(&Value::Object(m)).unwrap()).unwrap();
        match cache::read(&file) {
            Ok(Cached::V1(info)) => {
                std::fs::write(&file, cache::encode(&info).expect("our document encodes")).unwrap();
                match cache::read(&file).expect("our encoding reads") {
                    Cached::V1(again) => prop_assert_eq!(again, info),
                    other => prop_assert!(false, "read back as {:?}", other),
                }
            }
            Ok(_) => {}
            Err(e) => assert_code(&e),
        }
    }

    #[test]
    fn device_info_file(v in doc()) {
        use multus::multus::devinfo::DeviceInfo;
        let path = Path::new("/devinfo.json");
        match DeviceInfo::parse(&serde_json::to_vec(&v).unwrap(), path) {
            Ok(info) => {
                let again = DeviceInfo::parse(&serde_json::to_vec(&info.to_value()).unwrap(), path).expect("our document parses");
                prop_assert_eq!(again, info);
            }
            Err(e) => assert_code(&e),
        }
    }

    /// The invocation validation refuses with code 3 or 4 and never panics, whatever the bytes.
    #[test]
    fn invocation_validation(id in ".{0,300}", ifname in ".{0,20}", args in ".{0,80}") {
        use multus::cni::skel::{Command, parse_cni_args};
        for cmd in [Command::Add, Command::Del, Command::Check, Command::Gc, Command::Status] {
            if let Err(e) = multus::cni::validate::invocation(cmd, &id, &ifname, &parse_cni_args(&args)) {
                prop_assert!(matches!(e.code(), 3 | 4), "{}", e);
                assert_code(&e);
            }
        }
    }
}

fn base64_of(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap())
}
