//! Thick mode: `multus-shim`, the CNI plugin the runtime calls, forwards each operation over a
//! unix socket to `multus-daemon`, which runs the multus core (`crate::multus`) for it.
//!
//! `api` is the wire contract (shared by both sides), `client` the socket's client side;
//! `shim` is the plugin. On the daemon side, `daemon_config` is daemon-config.json (parsed once)
//! and its per-request override, `generate` the `00-multus.conf` it writes for the shim and
//! `manager` the thread that keeps that file in step with the primary (or copies the user's),
//! `request` turns a request into a CNI invocation, `server` is the HTTP API (with `metrics`),
//! `chroot` runs delegates in the host's root, and `daemon` is startup, serving and shutdown.

pub use multus_core::thick::{api, client, http, shim};
pub mod chroot;
pub mod daemon;
pub mod daemon_config;
pub mod generate;
pub mod manager;
pub mod metrics;
pub mod request;
pub mod server;
