//! How a command ends, for the scripts and workflows that run it: the documented exit codes and
//! the typed failures that select them. A failure carries its kind through `anyhow` context, so
//! `main` finds it anywhere in the chain.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a tool or the infrastructure failed (cargo, a registry that cannot be reached, a broken Trivy, a file that cannot be read) |
//! | 2 | usage: unknown flag, missing argument (clap) |
//! | 3 | the release gate failed (a finding the policy fails on, an expired or incomplete waiver) |
//! | 4 | a verification failed (a signature, attestation, digest or read-back does not match) |
//! | 5 | refused before doing anything (publishing unscanned images, the development key for a remote registry) — also under `--dry-run` |

use std::fmt;

#[derive(Debug)]
pub enum Failure {
    Gate(String),
    Verification(String),
    Refused(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Gate(m) | Failure::Verification(m) | Failure::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Gate(_) => 3,
            Failure::Verification(_) => 4,
            Failure::Refused(_) => 5,
        }
    }
}

/// A verification mismatch as an error.
pub fn mismatch(message: impl Into<String>) -> anyhow::Error {
    Failure::Verification(message.into()).into()
}

/// A refusal as an error.
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    Failure::Refused(message.into()).into()
}

/// The exit code of a failed command: the first typed failure in its chain, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain().find_map(|c| c.downcast_ref::<Failure>()).map_or(1, Failure::code)
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn the_kind_survives_context() {
        let e: anyhow::Result<()> = Err(mismatch("bytes differ"));
        let e = e.context("verifying x").unwrap_err();
        assert_eq!(exit_code(&e), 4);
        assert_eq!(exit_code(&refused("no")), 5);
        assert_eq!(exit_code(&Failure::Gate("g".into()).into()), 3);
        assert_eq!(exit_code(&anyhow::anyhow!("io")), 1);
    }
}
