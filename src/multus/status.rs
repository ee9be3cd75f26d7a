//! The `k8s.v1.cni.cncf.io/network-status` annotation: what each delegate's result means for the
//! pod, in upstream's JSON shape (network-attachment-definition-client v1.7.6
//! `CreateNetworkStatuses` and `NetworkStatus`), and the annotation text multus writes
//! (`[` + entries indented by four spaces, joined by `,` + `]`). Pure.

use serde::Serialize;
use serde_json::Value;

use crate::cni::CniResult;
use crate::cni::result::Dns;

/// One entry of the annotation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkStatus {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interface: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub mtu: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    pub dns: Dns,
    #[serde(rename = "device-info", skip_serializing_if = "Option::is_none")]
    pub device_info: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// The entries for one delegate's result: one per sandbox interface (IPs by their interface
/// index, unindexed IPs on the last one), or a single entry when the result has one interface.
/// An empty result yields no entry. `gateway` lists the default routes' gateways of the result.
pub fn from_result(r: &CniResult, name: &str, default: bool, device_info: Option<&Value>) -> Vec<NetworkStatus> {
    if r.interfaces.is_empty() && r.ips.is_empty() {
        return vec![];
    }
    let gateway: Vec<String> =
        r.routes.iter().filter(|rt| rt.dst.prefix == 0).filter_map(|rt| rt.gw.map(|g| g.to_string())).collect();
    let entry = |interface: &str, mac: &str, mtu: u32| NetworkStatus {
        name: name.to_string(),
        interface: interface.to_string(),
        ips: vec![],
        mac: mac.to_string(),
        mtu,
        default,
        dns: r.dns.clone(),
        device_info: device_info.cloned(),
        gateway: gateway.clone(),
    };
    if r.interfaces.len() <= 1 {
        let (iface, mac, mtu) =
            r.interfaces.first().map(|i| (i.name.as_str(), i.mac.as_str(), i.mtu)).unwrap_or(("", "", 0));
        let mut e = entry(iface, mac, mtu);
        e.ips = r.ips.iter().map(|ip| ip.address.addr.to_string()).collect();
        return vec![e];
    }
    let mut out = Vec::new();
    let mut index = std::collections::BTreeMap::new();
    for (i, iface) in r.interfaces.iter().enumerate() {
        if !iface.sandbox.is_empty() {
            index.insert(i, out.len());
            out.push(entry(&iface.name, &iface.mac, iface.mtu));
        }
    }
    for ip in &r.ips {
        let slot = match ip.interface {
            Some(i) => index.get(&i).copied(),
            None => out.len().checked_sub(1),
        };
        if let Some(s) = slot {
            out[s].ips.push(ip.address.addr.to_string());
        }
    }
    // Only the first sandbox interface of the default network is the default one.
    for e in out.iter_mut().skip(1) {
        e.default = false;
    }
    out
}

/// The annotation value, formatted as upstream writes it.
pub fn annotation(entries: &[NetworkStatus]) -> String {
    let parts: Vec<String> =
        entries.iter().map(|e| pretty4(&serde_json::to_value(e).expect("status serializes"))).collect();
    format!("[{}]", parts.join(","))
}

/// Go's `json.MarshalIndent(v, "", "    ")`.
fn pretty4(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("value serializes");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(doc: &str) -> CniResult {
        CniResult::parse(doc.as_bytes(), "").unwrap()
    }

    #[test]
    fn bridge_result_gives_one_entry_for_the_pod_interface() {
        let r = result(
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"0a:58:0a:f4:01:01"},{"name":"veth1","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","mac":"0a:58:0a:f4:01:05","sandbox":"/var/run/netns/p"}],"ips":[{"interface":2,"address":"10.244.1.5/24","gateway":"10.244.1.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"}],"dns":{}}"#,
        );
        let s = from_result(&r, "kindnet", true, None);
        assert_eq!(
            annotation(&s),
            "[{\n    \"name\": \"kindnet\",\n    \"interface\": \"eth0\",\n    \"ips\": [\n        \"10.244.1.5\"\n    ],\n    \"mac\": \"0a:58:0a:f4:01:05\",\n    \"default\": true,\n    \"dns\": {},\n    \"gateway\": [\n        \"10.244.1.1\"\n    ]\n}]"
        );
    }

    #[test]
    fn single_interface_secondary_with_device_info() {
        let r = result(
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"net1","mac":"c2:11:22:33:44:55","mtu":1400,"sandbox":"/var/run/netns/p"}],"ips":[{"interface":0,"address":"10.1.1.11/24"},{"address":"fd00::11/64"}],"dns":{"nameservers":["10.96.0.10"]}}"#,
        );
        let dev = serde_json::json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:00:1f.6"}});
        let s = from_result(&r, "default/macvlan-conf", false, Some(&dev));
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!([{"name": "default/macvlan-conf", "interface": "net1", "ips": ["10.1.1.11", "fd00::11"],
                "mac": "c2:11:22:33:44:55", "mtu": 1400, "dns": {"nameservers": ["10.96.0.10"]}, "device-info": dev}])
        );
    }

    #[test]
    fn empty_results_have_no_entry_and_unindexed_ips_go_last() {
        assert!(from_result(&result(r#"{"cniVersion":"1.0.0","dns":{}}"#), "aux", false, None).is_empty());
        let r = result(
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"a","sandbox":"/p"},{"name":"b","sandbox":"/p"}],"ips":[{"interface":0,"address":"10.0.0.1/24"},{"address":"10.0.1.1/24"}],"dns":{}}"#,
        );
        let s = from_result(&r, "two", true, None);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].ips.clone(), s[0].default), (vec!["10.0.0.1".to_string()], true));
        assert_eq!((s[1].ips.clone(), s[1].default), (vec!["10.0.1.1".to_string()], false));
    }
}
