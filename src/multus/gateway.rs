//! default-route handling (upstream §5.8): which delegate keeps the pod's default route, the ECMP
//! refusal, the route edits in the pod namespace and the matching edits of the cached results.
//!
//! Planning and cache edits are pure; [`apply`] is the netlink edge. Fix of upstream bug #5: a
//! family's default routes are only removed from other interfaces when some delegate asks for a
//! gateway of that family, and `default-route: []` removes default routes from its own interface
//! only (upstream removed them everywhere, of both families).

use std::net::IpAddr;

use serde_json::{Value, json};

use super::delegate::Delegate;
use crate::cni::error::Error;
use crate::netns;

/// Sets each delegate's filter flags; refuses more than one gateway per family.
pub fn plan(delegates: &mut [Delegate]) -> Result<(), Error> {
    if delegates.iter().all(|d| d.requests.gateway.is_none()) {
        return Ok(());
    }
    let gws: Vec<IpAddr> = delegates.iter().filter_map(|d| d.requests.gateway.as_ref()).flatten().copied().collect();
    let v4 = gws.iter().filter(|g| g.is_ipv4()).count();
    let v6 = gws.len() - v4;
    if v4 > 1 || v6 > 1 {
        return Err(Error::InvalidConfig("multus does not support ECMP for default-route".into()));
    }
    for d in delegates.iter_mut() {
        let own = d.requests.gateway.clone();
        let has = |v4: bool| own.as_ref().is_some_and(|g| g.iter().any(|ip| ip.is_ipv4() == v4));
        let none_wanted = own.as_ref().is_some_and(|g| g.is_empty());
        d.filter_v4_gateway = none_wanted || (v4 > 0 && !has(true));
        d.filter_v6_gateway = none_wanted || (v6 > 0 && !has(false));
    }
    Ok(())
}

/// True when the delegate's routes need touching after its ADD.
pub fn needs_edit(d: &Delegate) -> bool {
    d.filter_v4_gateway || d.filter_v6_gateway || d.requests.gateway.as_ref().is_some_and(|g| !g.is_empty())
}

fn drop_family(d: &Delegate, v4: bool) -> bool {
    let requested = d.requests.gateway.as_ref().is_some_and(|g| g.iter().any(|ip| ip.is_ipv4() == v4));
    requested || if v4 { d.filter_v4_gateway } else { d.filter_v6_gateway }
}

/// In the pod namespace: remove the interface's default routes of the affected families, then
/// add the requested ones. Returns what it could not do (logged by the caller, as upstream).
pub fn apply(netns_path: &str, ifname: &str, d: &Delegate) -> Result<Vec<String>, Error> {
    let (drop4, drop6) = (drop_family(d, true), drop_family(d, false));
    let gws = d.requests.gateway.clone().unwrap_or_default();
    let ifname = ifname.to_string();
    netns::run_in(netns_path, move || {
        let mut problems = Vec::new();
        let Some(idx) = netns::link_index(&ifname) else {
            return Ok(vec![format!("interface {ifname} not found for default-route handling")]);
        };
        let routes = netns::routes().map_err(|e| Error::Internal(format!("listing routes of {ifname}: {e}")))?;
        for r in routes.iter().filter(|r| r.is_default() && r.oif == Some(idx)) {
            let v4 = r.family == libc::AF_INET as u8;
            if (v4 && drop4) || (!v4 && drop6) {
                if let Err(e) = netns::delete_route(r) {
                    problems.push(format!("deleting default route via {:?} on {ifname}: {e}", r.gateway));
                }
            }
        }
        for gw in gws {
            if let Err(e) = netns::add_default_route(idx, gw) {
                problems.push(format!("adding default route via {gw} on {ifname}: {e}"));
            }
        }
        Ok(problems)
    })
}

/// The same edit on a cached result document (any layout).
pub fn edit_result(result: &mut Value, d: &Delegate) {
    let (drop4, drop6) = (drop_family(d, true), drop_family(d, false));
    let gws = d.requests.gateway.clone().unwrap_or_default();
    let is_default = |r: &Value, v4: bool| {
        let dst = r.get("dst").and_then(Value::as_str).unwrap_or("");
        if v4 { dst == "0.0.0.0/0" } else { dst == "::/0" || dst == "::0/0" }
    };
    if result.get("ip4").is_some() || result.get("ip6").is_some() {
        for (key, v4, drop) in [("ip4", true, drop4), ("ip6", false, drop6)] {
            if let Some(routes) = result.get_mut(key).and_then(|i| i.get_mut("routes")).and_then(Value::as_array_mut) {
                if drop {
                    routes.retain(|r| !is_default(r, v4));
                }
            }
            for gw in gws.iter().filter(|g| g.is_ipv4() == v4) {
                if let Some(ipc) = result.get_mut(key).and_then(Value::as_object_mut) {
                    let routes = ipc.entry("routes").or_insert_with(|| json!([]));
                    if let Some(a) = routes.as_array_mut() {
                        a.push(json!({"dst": if v4 { "0.0.0.0/0" } else { "::/0" }, "gw": gw.to_string()}));
                    }
                }
            }
        }
        return;
    }
    let obj = match result.as_object_mut() {
        Some(o) => o,
        None => return,
    };
    let routes = obj.entry("routes").or_insert_with(|| json!([]));
    if let Some(a) = routes.as_array_mut() {
        a.retain(|r| !((drop4 && is_default(r, true)) || (drop6 && is_default(r, false))));
        for gw in &gws {
            a.push(json!({"dst": if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" }, "gw": gw.to_string()}));
        }
    }
    if obj.get("routes").and_then(Value::as_array).is_some_and(|a| a.is_empty()) {
        obj.remove("routes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multus::delegate::DelegateConfig;

    fn d(name: &str, gw: Option<&[&str]>) -> Delegate {
        let mut d =
            Delegate::new(DelegateConfig::from_value(json!({"name": name, "type": "bridge"}), "1.0.0").unwrap());
        d.requests.gateway = gw.map(|g| g.iter().map(|s| s.parse().unwrap()).collect());
        d
    }

    #[test]
    fn the_requesting_delegate_keeps_the_route_of_its_family_only() {
        let mut ds = vec![d("eth", None), d("net1", Some(&["10.1.1.254"]))];
        plan(&mut ds).unwrap();
        assert_eq!((ds[0].filter_v4_gateway, ds[0].filter_v6_gateway), (true, false), "v6 untouched: nobody asked");
        assert_eq!((ds[1].filter_v4_gateway, ds[1].filter_v6_gateway), (false, false));
        assert!(needs_edit(&ds[0]) && needs_edit(&ds[1]));
    }

    #[test]
    fn empty_request_only_affects_itself() {
        let mut ds = vec![d("eth", None), d("net1", Some(&[]))];
        plan(&mut ds).unwrap();
        assert!(!needs_edit(&ds[0]));
        assert_eq!((ds[1].filter_v4_gateway, ds[1].filter_v6_gateway), (true, true));
    }

    #[test]
    fn ecmp_is_refused() {
        let mut ds = vec![d("a", Some(&["10.0.0.1"])), d("b", Some(&["10.1.0.1"]))];
        let e = plan(&mut ds).unwrap_err();
        assert_eq!(e.to_string(), "multus does not support ECMP for default-route");
        let mut ds = vec![d("a", Some(&["10.0.0.1"])), d("b", Some(&["fd00::1"]))];
        plan(&mut ds).unwrap();
    }

    #[test]
    fn cached_results_are_edited_in_every_layout() {
        let mut filtered = d("eth", None);
        filtered.filter_v4_gateway = true;
        let mut r = json!({"cniVersion":"1.0.0","routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"},{"dst":"10.96.0.0/12"},{"dst":"::/0","gw":"fd00::1"}],"dns":{}});
        edit_result(&mut r, &filtered);
        assert_eq!(r["routes"], json!([{"dst":"10.96.0.0/12"},{"dst":"::/0","gw":"fd00::1"}]));

        let wanted = d("net1", Some(&["10.1.1.254"]));
        let mut r = json!({"cniVersion":"0.4.0","routes":[{"dst":"0.0.0.0/0","gw":"10.1.1.1"}],"dns":{}});
        edit_result(&mut r, &wanted);
        assert_eq!(r["routes"], json!([{"dst":"0.0.0.0/0","gw":"10.1.1.254"}]));

        let mut r = json!({"cniVersion":"0.2.0","ip4":{"ip":"10.1.1.5/24","routes":[{"dst":"0.0.0.0/0","gw":"10.1.1.1"}]},"dns":{}});
        edit_result(&mut r, &wanted);
        assert_eq!(r["ip4"]["routes"], json!([{"dst":"0.0.0.0/0","gw":"10.1.1.254"}]));
    }
}
