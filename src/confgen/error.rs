//! The config layer's errors (`confgen`, and the daemon's `thick::generate` and `thick::manager`):
//! what went wrong with a config file, a flag or the node, without CNI error codes, which mean
//! nothing to an installer or a config manager. A plugin that reports one converts it into
//! `cni::Error` (the `From` below) at its boundary.

use crate::files::FileError;
use crate::golang::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read, written, listed or removed.
    #[error(transparent)]
    File(#[from] FileError),
    /// A key whose value Go would refuse to decode.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A document, flag or environment variable that cannot be used; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The primary's CNI version cannot be wrapped with the configured one.
    #[error("incompatible CNI versions: {0}")]
    Incompatible(String),
    /// The node cannot do what is asked (a file watch, a thread).
    #[error("{0}")]
    Setup(String),
    /// What was being done when the failure happened.
    #[error("{context}: {source}")]
    Context { context: String, source: Box<Error> },
    /// Cleanup collects every failure.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Multiple(Vec<Error>),
}

impl Error {
    pub fn io(context: &'static str, path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Error {
        Error::File(FileError::new(context, path, source))
    }

    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context { context: context.into(), source: Box::new(self) }
    }

    /// Joins cleanup errors: none → Ok, one → itself, more → one flat [`Error::Multiple`].
    pub fn join(errors: Vec<Error>) -> Result<(), Error> {
        crate::cni::error::join_flat(
            errors,
            |e| match e {
                Error::Multiple(v) => Ok(v),
                e => Err(e),
            },
            Error::Multiple,
        )
    }
}

impl From<Error> for crate::cni::Error {
    fn from(e: Error) -> crate::cni::Error {
        use crate::cni::Error as Cni;
        match e {
            Error::File(f) => f.into(),
            Error::Field(f) => f.into(),
            Error::Invalid(m) => Cni::InvalidConfig(m),
            Error::Incompatible(m) => Cni::IncompatibleVersion(m),
            Error::Setup(m) => Cni::Internal(m),
            Error::Context { context, source } => Cni::from(*source).context(context),
            Error::Multiple(v) => Cni::Multiple(v.into_iter().map(Cni::from).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_lists_are_flat_and_keep_their_codes_as_cni_errors() {
        let nested = Error::join(vec![Error::Invalid("a".into()), Error::Setup("b".into())]).unwrap_err();
        let e = Error::join(vec![nested, Error::Invalid("c".into())]).unwrap_err();
        match &e {
            Error::Multiple(v) => assert_eq!(v.len(), 3, "{v:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.to_string(), "a; b; c");
        let cni = crate::cni::Error::from(Error::Incompatible("x".into()).context("primary"));
        assert_eq!((cni.code(), cni.to_string()), (1, "primary: incompatible CNI versions: x".to_string()));
        let cni = crate::cni::Error::from(Error::io("failed to read", "/p", std::io::ErrorKind::NotFound.into()));
        assert_eq!(cni.code(), 5);
    }
}
