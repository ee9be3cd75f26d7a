//! The shim's side of the thick socket API, shared with multus-core (`src/thick/`).

#[path = "../../../src/thick/api.rs"]
pub mod api;
#[path = "../../../src/thick/http.rs"]
pub mod http;
#[path = "../../../src/thick/shim.rs"]
pub mod shim;
