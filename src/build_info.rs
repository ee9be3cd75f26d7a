//! What a binary says about itself with `--version`: the version and commit that `cargo xtask build`
//! stamps in at compile time (`MULTUS_VERSION`, `MULTUS_COMMIT`), or the crate version for a plain
//! `cargo build`.

/// `0.1.0+g1a2b3c4`, or the tag for a tagged release.
pub const VERSION: &str = match option_env!("MULTUS_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// The full commit hash, or `unknown` outside `cargo xtask build`.
pub const COMMIT: &str = match option_env!("MULTUS_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// The `--version` line of binary `bin`.
pub fn version_line(bin: &str) -> String {
    format!("{bin} version {VERSION} commit {COMMIT}")
}

/// True when the command line asks for the version (`-v`, `--version`).
pub fn wants_version(args: &[String]) -> bool {
    args.iter().skip(1).any(|a| a == "-v" || a == "--version")
}
