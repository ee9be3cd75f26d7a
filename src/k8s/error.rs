//! The Kubernetes layer's errors: what failed talking to the API server or the kubelet, with the
//! client's own error kept as the source (its HTTP status decides whether a retry can help).
//! They become `cni::Error` where multus meets this layer, `multus::kube::Cluster`: a transient
//! API failure as code 11 (try again later), everything else as upstream's plain Go errors (999),
//! settings as invalid config (7), malformed objects as decoding failures (6).

use crate::cni::error::{CniError, code};
use crate::files::FileError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed (after the retries); `what` names the call and the object.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// No usable client settings: kubeconfig, in-cluster environment.
    #[error("{0}")]
    Config(String),
    /// An object or file does not have the shape its schema says.
    #[error("{0}")]
    Malformed(String),
    /// A file (the device-plugin checkpoint) could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// The object is no longer the one the request is about (a pod recreated under its name).
    #[error("{0}")]
    Stale(String),
    /// The devices a pod was given cannot be found out (PodResources API, checkpoint).
    #[error("{0}")]
    Devices(String),
    /// The client's own machinery (its runtime) could not start.
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    pub fn api(what: impl Into<String>, source: kube::Error) -> Error {
        Error::Api { what: what.into(), source: Box::new(source) }
    }

    /// Worth retrying: the server is overloaded or unreachable (upstream `isCriticalErr`).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Api { source, .. } if is_transient(source))
    }
}

/// A client error worth retrying: 429, 5xx gateway/availability answers, or no answer at all.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(r) => matches!(r.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

impl From<Error> for crate::cni::Error {
    fn from(e: Error) -> crate::cni::Error {
        use crate::cni::Error as Cni;
        match e {
            Error::Api { .. } => {
                let code = if e.is_transient() { code::TRY_AGAIN_LATER } else { code::INTERNAL };
                Cni::Cni(CniError::new(code, e.to_string(), ""))
            }
            Error::Config(m) => Cni::InvalidConfig(m),
            Error::Malformed(m) => Cni::Decoding(m),
            Error::File(f) => f.into(),
            Error::Stale(m) | Error::Devices(m) | Error::Runtime(m) => Cni::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::ErrorResponse {
            status: "Failure".into(),
            message: "m".into(),
            reason: "r".into(),
            code,
        })
    }

    #[test]
    fn cni_codes_follow_the_kind_of_failure() {
        let busy = crate::cni::Error::from(Error::api("cannot get pod ns/p", status(503)));
        assert_eq!(busy.code(), code::TRY_AGAIN_LATER);
        assert!(busy.to_string().starts_with("cannot get pod ns/p: "), "{busy}");
        assert_eq!(crate::cni::Error::from(Error::api("x", status(403))).code(), code::INTERNAL);
        assert_eq!(crate::cni::Error::from(Error::Config("kubeconfig".into())).code(), 7);
        assert_eq!(crate::cni::Error::from(Error::Malformed("nad".into())).code(), 6);
    }
}
