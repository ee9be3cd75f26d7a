//! The network selection annotation `k8s.v1.cni.cncf.io/networks`, in both of upstream's forms: a
//! comma list of `[namespace/]name[@ifname]`, or (when the value contains `[`, `{` or `"`) a JSON
//! array of selection objects with every key of Multus 4.2.1. Strict: an error quotes the element
//! it could not accept. Pure: a string in, selections out.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::delegate::Requests;
use crate::cni::error::Error;
use crate::cni::network::MAX_IFNAME_LEN;

/// One requested attachment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkSelection {
    pub name: String,
    pub namespace: String,
    pub requests: Requests,
}

fn invalid(msg: String) -> Error {
    Error::InvalidConfig(format!("invalid k8s.v1.cni.cncf.io/networks annotation: {msg}"))
}

/// A DNS-1123 label as upstream checks names and namespaces: `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`.
pub fn valid_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && ok(&b[0]) && ok(&b[b.len() - 1]) && b.iter().all(|c| ok(c) || *c == b'-')
}

fn check_ifname(ifname: &str, element: &str) -> Result<(), Error> {
    if ifname.is_empty() || ifname.len() > MAX_IFNAME_LEN || ifname.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(invalid(format!(
            "interface name {ifname:?} in {element:?} must be 1 to {MAX_IFNAME_LEN} characters without whitespace or '/'"
        )));
    }
    Ok(())
}

/// A hardware address as Go's `net.ParseMAC` accepts it (6, 8 or 20 octets; `:`, `-` or `.` form).
pub fn valid_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit());
    let octets = if s.contains('.') {
        let parts: Vec<&str> = s.split('.').collect();
        if !parts.iter().all(|p| hex(p, 4)) {
            return false;
        }
        parts.len() * 2
    } else {
        let sep = if s.contains(':') { ':' } else { '-' };
        let parts: Vec<&str> = s.split(sep).collect();
        if !parts.iter().all(|p| hex(p, 2)) {
            return false;
        }
        parts.len()
    };
    matches!(octets, 6 | 8 | 20)
}

fn valid_ip_or_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((ip, prefix)) => ip
            .parse::<IpAddr>()
            .is_ok_and(|a| prefix.parse::<u8>().is_ok_and(|p| p <= if a.is_ipv4() { 32 } else { 128 })),
        None => s.parse::<IpAddr>().is_ok(),
    }
}

/// Parses the annotation; an empty value selects nothing. `pod_namespace` is the default namespace.
pub fn parse_networks(value: &str, pod_namespace: &str) -> Result<Vec<NetworkSelection>, Error> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(vec![]);
    }
    if value.contains(['[', '{', '"']) {
        parse_json(value, pod_namespace)
    } else {
        value.split(',').map(|item| parse_text(item.trim(), pod_namespace)).collect()
    }
}

fn parse_text(item: &str, pod_namespace: &str) -> Result<NetworkSelection, Error> {
    if item.is_empty() {
        return Err(invalid("an empty element in the comma-separated list".into()));
    }
    let (namespace, rest) = match item.split('/').collect::<Vec<_>>().as_slice() {
        [name] => (None, *name),
        [ns, name] => (Some(ns.trim()), *name),
        _ => return Err(invalid(format!("{item:?} has more than one '/'"))),
    };
    let (name, ifname) = match rest.split('@').collect::<Vec<_>>().as_slice() {
        [name] => (name.trim(), None),
        [name, ifname] => (name.trim(), Some(ifname.trim())),
        _ => return Err(invalid(format!("{item:?} has more than one '@'"))),
    };
    for part in namespace.iter().copied().chain([name]) {
        if !valid_label(part) {
            return Err(invalid(format!(
                "{part:?} in {item:?} must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character"
            )));
        }
    }
    if let Some(i) = ifname {
        check_ifname(i, item)?;
    }
    Ok(NetworkSelection {
        name: name.to_string(),
        namespace: namespace.unwrap_or(pod_namespace).to_string(),
        requests: Requests { ifname: ifname.map(str::to_string), ..Requests::default() },
    })
}

fn parse_json(value: &str, pod_namespace: &str) -> Result<Vec<NetworkSelection>, Error> {
    let doc: Value = serde_json::from_str(value).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let items = doc.as_array().ok_or_else(|| invalid("the JSON form must be a list of objects".into()))?;
    items.iter().map(|item| parse_element(item, pod_namespace)).collect()
}

fn parse_element(item: &Value, pod_namespace: &str) -> Result<NetworkSelection, Error> {
    let shown = item.to_string();
    let obj = item.as_object().ok_or_else(|| invalid(format!("{shown} is not an object")))?;
    let string = |key: &str| -> Result<Option<String>, Error> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!("{key:?} in {shown} must be a string"))),
        }
    };
    let name = string("name")?.filter(|n| !n.is_empty()).ok_or_else(|| invalid(format!("{shown} has no \"name\"")))?;
    let namespace = string("namespace")?.filter(|n| !n.is_empty()).unwrap_or_else(|| pod_namespace.to_string());
    for part in [&name, &namespace] {
        if !valid_label(part) {
            return Err(invalid(format!("{part:?} in {shown} is not a valid name")));
        }
    }
    // `interfaceRequest` is the deprecated spelling of `interface`.
    let ifname = match string("interface")? {
        Some(i) => Some(i),
        None => string("interfaceRequest")?,
    }
    .filter(|i| !i.is_empty());
    if let Some(i) = &ifname {
        check_ifname(i, &shown)?;
    }
    let ips = match obj.get("ips") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if valid_ip_or_cidr(s) => Ok(s.to_string()),
                _ => Err(invalid(format!("\"ips\" entry {v} in {shown} is not an IP address or CIDR"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(format!("\"ips\" in {shown} must be a list"))),
    };
    let mac = string("mac")?;
    if let Some(m) = &mac {
        if !valid_mac(m) {
            return Err(invalid(format!("\"mac\" {m:?} in {shown} is not a hardware address")));
        }
    }
    let infiniband_guid = string("infiniband-guid")?;
    if let Some(g) = &infiniband_guid {
        if !valid_mac(g) {
            return Err(invalid(format!("\"infiniband-guid\" {g:?} in {shown} is not a GUID")));
        }
    }
    let object_or_list = |key: &str, want_list: bool| -> Result<Option<Value>, Error> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Array(_)) if want_list => Ok(Some(v.clone())),
            Some(v @ Value::Object(_)) if !want_list => Ok(Some(v.clone())),
            Some(_) => {
                Err(invalid(format!("{key:?} in {shown} must be {}", if want_list { "a list" } else { "an object" })))
            }
        }
    };
    let port_mappings = object_or_list("portMappings", true)?;
    let bandwidth = object_or_list("bandwidth", false)?;
    let cni_args: Option<Map<String, Value>> = object_or_list("cni-args", false)?.and_then(|v| v.as_object().cloned());
    let gateway = match obj.get("default-route") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_str()
                        .and_then(|s| s.parse::<IpAddr>().ok())
                        .ok_or_else(|| invalid(format!("\"default-route\" entry {v} in {shown} is not an IP address")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(invalid(format!("\"default-route\" in {shown} must be a list"))),
    };
    Ok(NetworkSelection {
        name,
        namespace,
        requests: Requests {
            ifname,
            mac,
            ips,
            infiniband_guid,
            gateway,
            port_mappings,
            bandwidth,
            cni_args,
            device_id: string("deviceID")?,
            resource_name: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(v: &[NetworkSelection]) -> Vec<(String, String, Option<String>)> {
        v.iter().map(|s| (s.namespace.clone(), s.name.clone(), s.requests.ifname.clone())).collect()
    }

    #[test]
    fn comma_form() {
        let v = parse_networks(" macvlan-conf, other-ns/bridge-conf@data0 ,sriov@net9", "default").unwrap();
        assert_eq!(
            names(&v),
            vec![
                ("default".into(), "macvlan-conf".into(), None),
                ("other-ns".into(), "bridge-conf".into(), Some("data0".into())),
                ("default".into(), "sriov".into(), Some("net9".into())),
            ]
        );
        assert!(parse_networks("", "default").unwrap().is_empty());
    }

    #[test]
    fn comma_form_errors_quote_the_element() {
        for (value, needle) in [
            ("a/b/c", "\"a/b/c\" has more than one '/'"),
            ("a@b@c", "\"a@b@c\" has more than one '@'"),
            ("Macvlan", "\"Macvlan\" in \"Macvlan\" must consist of lower case"),
            ("ns/-x", "\"-x\""),
            ("a,,b", "an empty element"),
            ("a@averyveryverylongifname", "interface name \"averyveryverylongifname\""),
            ("a@", "interface name \"\""),
        ] {
            let e = parse_networks(value, "default").unwrap_err().to_string();
            assert!(e.contains(needle), "{value}: {e}");
        }
    }

    #[test]
    fn json_form_with_every_key() {
        let value = json!([
            {"name": "macvlan-conf", "interface": "net5", "ips": ["10.1.1.11/24", "fd00::11"], "mac": "c2:11:22:33:44:55",
             "default-route": ["10.1.1.254"], "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
             "bandwidth": {"ingressRate": 1000, "ingressBurst": 10}, "deviceID": "0000:00:1f.6",
             "cni-args": {"foo": "bar"}, "infiniband-guid": "c2:11:22:33:44:55:66:77"},
            {"name": "other", "namespace": "team-a", "interfaceRequest": "legacy0"}
        ])
        .to_string();
        let v = parse_networks(&value, "default").unwrap();
        let r = &v[0].requests;
        assert_eq!((v[0].namespace.as_str(), r.ifname.as_deref()), ("default", Some("net5")));
        assert_eq!(r.ips, vec!["10.1.1.11/24", "fd00::11"]);
        assert_eq!(r.gateway, Some(vec!["10.1.1.254".parse().unwrap()]));
        assert_eq!(r.port_mappings, Some(json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])));
        assert_eq!(r.bandwidth, Some(json!({"ingressRate": 1000, "ingressBurst": 10})));
        assert_eq!(r.cni_args, Some(json!({"foo": "bar"}).as_object().unwrap().clone()));
        assert_eq!(r.device_id.as_deref(), Some("0000:00:1f.6"));
        assert_eq!(r.infiniband_guid.as_deref(), Some("c2:11:22:33:44:55:66:77"));
        assert_eq!((v[1].namespace.as_str(), v[1].requests.ifname.as_deref()), ("team-a", Some("legacy0")));
        let empty = parse_networks(r#"[{"name":"a","default-route":[]}]"#, "default").unwrap();
        assert_eq!(empty[0].requests.gateway, Some(vec![]));
    }

    #[test]
    fn json_form_errors_quote_the_element() {
        for (value, needle) in [
            (r#"{"name":"a"}"#, "must be a list of objects"),
            (r#"[{"name":"a"}"#, "not valid JSON"),
            (r#"["a"]"#, "\"a\" is not an object"),
            (r#"[{"namespace":"x"}]"#, "has no \"name\""),
            (r#"[{"name":"a","ips":["10.0.0.300"]}]"#, "\"ips\" entry \"10.0.0.300\""),
            (r#"[{"name":"a","mac":"c2:11:22"}]"#, "\"mac\" \"c2:11:22\""),
            (r#"[{"name":"a","default-route":["gw"]}]"#, "\"default-route\" entry \"gw\""),
            (r#"[{"name":"a","interface":"x y"}]"#, "interface name \"x y\""),
            (r#"[{"name":"a","portMappings":{}}]"#, "\"portMappings\""),
            (r#"[{"name":"A_B"}]"#, "\"A_B\""),
            (r#"[{"name":"a","ips":"10.0.0.1"}]"#, "\"ips\" in"),
        ] {
            let e = parse_networks(value, "default").unwrap_err().to_string();
            assert!(e.contains(needle), "{value}: {e}");
            assert!(e.starts_with("invalid k8s.v1.cni.cncf.io/networks annotation: "));
        }
    }

    #[test]
    fn macs_as_go_parses_them() {
        for ok in [
            "c2:11:22:33:44:55",
            "C2-11-22-33-44-55",
            "c211.2233.4455",
            "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
        ] {
            assert!(valid_mac(ok), "{ok}");
        }
        for bad in ["", "c2:11:22:33:44", "c2:11:22:33:44:5g", "c2:11-22:33:44:55", "c211.2233"] {
            assert!(!valid_mac(bad), "{bad}");
        }
    }

    /// No input makes the parser panic: random strings over an alphabet of the characters the
    /// grammar cares about, and mutations of valid annotations (a seeded xorshift, reproducible).
    #[test]
    fn never_panics_on_any_input() {
        let alphabet: Vec<char> = "abz09-/@, \t\n[]{}\":.\\xAZé_".chars().collect();
        let seeds = [
            r#"[{"name":"a","ips":["10.0.0.1/24"],"mac":"c2:11:22:33:44:55","default-route":["10.0.0.1"]}]"#,
            "ns/name@eth1,other",
        ];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000 {
            let s: String = if i % 2 == 0 {
                let len = (next() % 40) as usize;
                (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect()
            } else {
                let mut c: Vec<char> = seeds[(i / 2) % 2].chars().collect();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() % (c.len() as u64 + 1)) as usize;
                    match next() % 3 {
                        0 if at < c.len() => {
                            c.remove(at);
                        }
                        1 => c.insert(at.min(c.len()), alphabet[(next() % alphabet.len() as u64) as usize]),
                        _ => c.truncate(at),
                    }
                }
                c.into_iter().collect()
            };
            let _ = parse_networks(&s, "default");
        }
    }
}
