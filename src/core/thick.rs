//! The shim's side of the thick-mode socket API (the documents, the unix-socket HTTP client and
//! the `multus-shim` plugin); `multus::thick` re-exports them beside the daemon's side.

#[path = "../thick/api.rs"]
pub mod api;
#[path = "../thick/client.rs"]
pub mod client;
#[path = "../thick/http.rs"]
pub mod http;
#[path = "../thick/shim.rs"]
pub mod shim;
