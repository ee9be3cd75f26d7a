//! The pod's network namespace as multus's operations see it: whether an interface name is taken,
//! and the default-route edits `gateway` plans. A trait, so `ops` runs in-process against a fake
//! in unit tests (no root, no namespaces); [`Netns`] is the real edge over `crate::netns`.

use super::delegate::Delegate;
use super::gateway;
use crate::cni::error::Error;
use crate::netns;

pub trait Sandbox: Send + Sync {
    /// Whether the namespace at `netns_path` has a link named `ifname`.
    fn link_exists(&self, netns_path: &str, ifname: &str) -> Result<bool, Error>;

    /// Applies `d`'s default-route request to `ifname` (`gateway::apply`); returns what could
    /// not be done.
    fn apply_gateway(&self, netns_path: &str, ifname: &str, d: &Delegate) -> Result<Vec<String>, Error>;
}

/// The real namespaces, entered on the calling thread (`netns::run_in`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Netns;

impl Sandbox for Netns {
    fn link_exists(&self, netns_path: &str, ifname: &str) -> Result<bool, Error> {
        let name = ifname.to_string();
        netns::run_in(netns_path, move || Ok(netns::link_index(&name).is_some()))
    }

    fn apply_gateway(&self, netns_path: &str, ifname: &str, d: &Delegate) -> Result<Vec<String>, Error> {
        gateway::apply(netns_path, ifname, d)
    }
}
