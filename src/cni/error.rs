//! CNI error objects (the `{"code","msg","details"}` wire shape) and the library's error enum.
//!
//! Every [`Error`] knows its CNI error code, so a binary can always print a spec-correct error
//! object and exit non-zero; see [`Error::to_cni`].

#[cfg(not(multus_nostd))]
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::prelude::*;

/// Well-known error codes of the CNI specification (1-99 reserved; 100+ plugin-specific).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const PLUGIN_NOT_AVAILABLE_LIMITED: u32 = 51;
    /// What Go's skel uses for errors that are not typed (`types.ErrInternal`).
    pub const INTERNAL: u32 = 999;
}

/// The error object of the CNI specification, as printed on stdout by a failing plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    #[serde(rename = "cniVersion", default, skip_serializing_if = "Option::is_none")]
    pub cni_version: Option<String>,
    pub code: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError { cni_version: None, code, msg: msg.into(), details: details.into() }
    }

    /// The JSON a plugin prints on stdout.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("error object serializes")
    }
}

impl core::fmt::Display for CniError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.details.is_empty() { write!(f, "{}", self.msg) } else { write!(f, "{}; {}", self.msg, self.details) }
    }
}

impl core::error::Error for CniError {}

/// Errors of the CNI runtime and plugin side. Messages are lower case and name the failing thing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Decoding(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidEnv(String),
    #[error("{0}")]
    UnsupportedField(String),
    #[error("incompatible CNI versions: {0}")]
    IncompatibleVersion(String),
    #[cfg(not(multus_nostd))]
    #[error("{context} {}: {source}", path.display())]
    Io { context: &'static str, path: PathBuf, source: std::io::Error },
    #[cfg(not(multus_nostd))]
    #[error("failed to find plugin {name:?} in path {paths:?}")]
    PluginNotFound { name: String, paths: Vec<PathBuf> },
    #[error("plugin {plugin} did not finish within {seconds}s and was killed")]
    Timeout { plugin: String, seconds: u64 },
    /// An error object: printed by a delegate, or a validation failure with libcni's code.
    #[error("{0}")]
    Cni(CniError),
    /// A failure with what was being done when it happened; code and details are the source's.
    #[error("{context}: {source}")]
    Context { context: String, source: Box<Error> },
    #[error("{0}")]
    Internal(String),
    /// Teardown collects every failure; the first one's code wins.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Multiple(Vec<Error>),
}

impl Error {
    #[cfg(not(multus_nostd))]
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { context, path: path.into(), source }
    }

    /// The CNI error code this failure is reported with.
    pub fn code(&self) -> u32 {
        match self {
            Error::Decoding(_) => code::DECODING_FAILURE,
            Error::InvalidConfig(_) => code::INVALID_NETWORK_CONFIG,
            #[cfg(not(multus_nostd))]
            Error::PluginNotFound { .. } => code::INVALID_NETWORK_CONFIG,
            Error::InvalidEnv(_) => code::INVALID_ENV,
            Error::UnsupportedField(_) => code::UNSUPPORTED_FIELD,
            Error::IncompatibleVersion(_) => code::INCOMPATIBLE_VERSION,
            #[cfg(not(multus_nostd))]
            Error::Io { .. } => code::IO_FAILURE,
            Error::Timeout { .. } => code::TRY_AGAIN_LATER,
            Error::Cni(e) => e.code,
            Error::Context { source, .. } => source.code(),
            Error::Internal(_) => code::INTERNAL,
            Error::Multiple(v) => v.first().map(Error::code).unwrap_or(code::INTERNAL),
        }
    }

    /// The error object to print. A delegate's own object keeps its msg and details.
    pub fn to_cni(&self) -> CniError {
        match self {
            Error::Cni(e) => e.clone(),
            Error::Context { context, source } => {
                let inner = source.to_cni();
                CniError { msg: format!("{context}: {}", inner.msg), ..inner }
            }
            Error::IncompatibleVersion(d) => CniError::new(self.code(), "incompatible CNI versions", d.clone()),
            other => CniError::new(other.code(), other.to_string(), ""),
        }
    }

    /// Whether a plugin was killed at its timeout somewhere in this failure.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Context { source, .. } => source.is_timeout(),
            Error::Multiple(v) => v.iter().any(Error::is_timeout),
            _ => false,
        }
    }

    /// Wraps the error with what was being done ("plugin type=\"bridge\" failed (add)").
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context { context: context.into(), source: Box::new(self) }
    }

    /// Joins teardown errors: none → Ok, one → itself, more → one flat [`Error::Multiple`] (a
    /// joined list inside another is spliced in, so messages and the first code stay readable).
    pub fn join(errors: Vec<Error>) -> Result<(), Error> {
        join_flat(
            errors,
            |e| match e {
                Error::Multiple(v) => Ok(v),
                e => Err(e),
            },
            Error::Multiple,
        )
    }
}

/// Joins the errors of a teardown, for any layer's error type: none → Ok, one → itself, more →
/// one list (`list`); a list among them (`split` opens it) is spliced in, so lists stay flat.
pub fn join_flat<E>(
    errors: Vec<E>,
    split: impl Fn(E) -> Result<Vec<E>, E>,
    list: impl FnOnce(Vec<E>) -> E,
) -> Result<(), E> {
    let mut flat = Vec::new();
    for e in errors {
        match split(e) {
            Ok(v) => flat.extend(v),
            Err(e) => flat.push(e),
        }
    }
    match flat.len() {
        0 => Ok(()),
        1 => Err(flat.remove(0)),
        _ => Err(list(flat)),
    }
}

#[cfg(not(multus_nostd))]
impl From<crate::files::FileError> for Error {
    fn from(e: crate::files::FileError) -> Error {
        Error::Io { context: e.context, path: e.path, source: e.source }
    }
}

impl From<crate::golang::FieldError> for Error {
    fn from(e: crate::golang::FieldError) -> Error {
        Error::Decoding(e.0)
    }
}

impl From<CniError> for Error {
    fn from(e: CniError) -> Error {
        Error::Cni(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_shape() {
        let e = CniError::new(4, "required env variables [CNI_NETNS] missing", "");
        assert_eq!(e.to_json(), r#"{"code":4,"msg":"required env variables [CNI_NETNS] missing"}"#);
        let back: CniError = serde_json::from_str(r#"{"code":1,"msg":"x","details":"y"}"#).unwrap();
        assert_eq!(back, CniError::new(1, "x", "y"));
    }

    #[test]
    fn codes_follow_the_variant() {
        assert_eq!(Error::Decoding("x".into()).code(), 6);
        assert_eq!(Error::Cni(CniError::new(999, "boom", "")).to_cni().msg, "boom");
        let wrapped = Error::Cni(CniError::new(11, "busy", "d")).context("plugin type=\"x\" failed (add)");
        assert_eq!(wrapped.to_cni(), CniError::new(11, "plugin type=\"x\" failed (add): busy", "d"));
        let joined = Error::join(vec![Error::InvalidEnv("a".into()), Error::Internal("b".into())]).unwrap_err();
        assert_eq!(joined.code(), 4);
        assert_eq!(joined.to_string(), "a; b");
        assert!(Error::join(vec![]).is_ok());
        let nested = Error::join(vec![joined, Error::Timeout { plugin: "x".into(), seconds: 1 }]);
        match nested.unwrap_err() {
            Error::Multiple(v) => assert_eq!(v.len(), 3, "flattened: {v:?}"),
            other => panic!("{other:?}"),
        }
    }
}
