//! Wire formats against fixture documents in `tests/fixtures/`, compared as whole texts (key
//! order included, which is Go's struct order). The fixtures are written by hand from libcni
//! v1.3.0's types and converters, or copied from what Debian's plugins printed — never generated
//! by the code under test.

use multus::cni::network::build_one_config;
use multus::cni::version::{ALL, VersionInfo};
use multus::cni::{CniError, CniResult, NetworkConfigList};
use serde_json::{Map, json};

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim_end().to_string()
}

fn layout(v: &str) -> u8 {
    match v {
        "0.1.0" | "0.2.0" => 2,
        "0.3.0" | "0.3.1" | "0.4.0" => 4,
        _ => 10,
    }
}

fn with_version(doc: &str, from: &str, to: &str) -> String {
    doc.replacen(&format!("\"cniVersion\":\"{from}\""), &format!("\"cniVersion\":\"{to}\""), 1)
}

/// Every source version converted to every target version equals the fixture libcni would give.
#[test]
fn result_conversion_between_every_pair() {
    for from in ALL {
        let source = fixture(&format!("results/rich-{from}.json"));
        for to in ALL {
            let expected = match (layout(from), layout(to)) {
                (2, 4) => with_version(&fixture("results/from-0.2.0-to-0.4.0.json"), "0.4.0", to),
                (2, 10) => with_version(&fixture("results/from-0.2.0-to-1.0.0.json"), "1.0.0", to),
                (4, 10) => with_version(&fixture("results/from-0.4.0-to-1.1.0.json"), "1.1.0", to),
                _ => fixture(&format!("results/rich-{to}.json")),
            };
            let got = CniResult::parse(source.as_bytes(), "").unwrap().to_json(to).unwrap();
            assert_eq!(got, expected, "converting {from} -> {to}");
        }
    }
}

/// What the reference plugins printed parses and re-encodes byte for byte.
#[test]
fn observed_plugin_results_round_trip() {
    for name in ["bridge-1.0.0", "bridge-0.4.0", "bridge-0.2.0"] {
        let text = fixture(&format!("results/{name}-observed.json"));
        let r = CniResult::parse(text.as_bytes(), "").unwrap();
        assert_eq!(r.to_json(&r.cni_version).unwrap(), text, "{name}");
    }
}

#[test]
fn result_without_version_uses_the_config_version() {
    // A 0.2.0-era plugin that printed no cniVersion.
    let r = CniResult::parse(br#"{"ip4":{"ip":"10.99.0.6/24"}}"#, "0.2.0").unwrap();
    assert_eq!(r.to_json("1.0.0").unwrap(), r#"{"cniVersion":"1.0.0","ips":[{"address":"10.99.0.6/24"}],"dns":{}}"#);
}

#[test]
fn conflist_loads_losslessly_and_builds_each_plugins_stdin() {
    let text = fixture("config/chain.conflist");
    let list = NetworkConfigList::from_bytes(text.as_bytes()).unwrap();
    assert_eq!(list.cni_version, "1.0.0", "highest of cniVersions and cniVersion that we support");
    assert!(!list.disable_check);
    assert_eq!(list.bytes, text.as_bytes(), "the list keeps its bytes for the cache");
    assert_eq!(
        String::from_utf8(list.plugins[0].to_bytes()).unwrap(),
        r#"{"type":"calico","datastore_type":"kubernetes","kubernetes":{"kubeconfig":"/etc/cni/net.d/calico-kubeconfig"},"ipam":{"type":"calico-ipam","assign_ipv4":"true"},"policy":{"type":"k8s"}}"#
    );
    let mut caps = Map::new();
    caps.insert("portMappings".into(), json!([{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]));
    caps.insert("bandwidth".into(), json!({"ingressRate": 1000}));
    let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}});
    let stdin = build_one_config(&list.name, &list.cni_version, &list.plugins[1], Some(&prev), &caps);
    assert_eq!(
        String::from_utf8(stdin).unwrap(),
        r#"{"type":"portmap","snat":true,"capabilities":{"portMappings":true},"name":"k8s-pod-network","cniVersion":"1.0.0","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}],"dns":{}},"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"tcp"}]}}"#
    );
}

#[test]
fn version_reply_and_error_objects() {
    assert_eq!(
        serde_json::to_string(&VersionInfo::ours()).unwrap(),
        r#"{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
    );
    // Shapes the reference plugins print (test-infra catalogue).
    for text in [
        r#"{"code":1,"msg":"incompatible CNI versions","details":"config is \"9.9.9\", plugin supports [\"0.1.0\"]"}"#,
        r#"{"code":4,"msg":"required env variables [CNI_NETNS] missing"}"#,
        r#"{"code":999,"msg":"failed to create ipvlan: operation not supported"}"#,
    ] {
        let e: CniError = serde_json::from_str(text).unwrap();
        assert_eq!(e.to_json(), text);
    }
}
