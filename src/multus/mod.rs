//! The multus meta-plugin's semantics, independent of how it is invoked (thin binary or daemon):
//! its config (`conf`), delegates and their requests (`delegate`), where delegates come from
//! (`resolve`, through the `kube::Cluster` seam), the scratch cache (`scratch`), default-route
//! handling (`gateway`), the operations with rollback (`ops`), single delegates for the daemon's
//! hot-plug API (`hotplug`) and the log (`logging`).

pub mod annotation;
pub mod conf;
pub mod delegate;
pub mod devinfo;
pub mod gateway;
pub mod hotplug;
pub mod kube;
pub mod nad;
pub mod ops;
pub mod resolve;
pub mod sandbox;
pub mod scratch;
pub mod status;
