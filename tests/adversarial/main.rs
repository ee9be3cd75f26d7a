//! Adversarial input and resource abuse, as an attacker or a careless runtime would try it, each
//! case asserting the safe outcome on the real binaries (the thin `multus`, `multus-shim` and
//! `multus-daemon`), real reference plugins in namespaces the test makes, and hostile test
//! delegates written as shell scripts (`hostile`).
//!
//! `paths`: container IDs and pod names that would become paths. `rollback`: a refused ADD must
//! not destroy what it refused to touch; a failing chain is undone whole. `netns`: CNI_NETNS that
//! is a FIFO or a plain file. `delegates`: hung, forking and flooding delegates. `daemon`: slow
//! bodies, floods of connections, SIGTERM with work in flight. `errors`: the error objects.

#[path = "../support/mod.rs"]
mod support;

mod daemon;
mod delegates;
mod errors;
mod hostile;
mod netns;
mod paths;
mod rollback;
