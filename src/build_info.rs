//! What a binary says about itself with `-version`/`--version`/`-v`: the version, commit and date
//! that `cargo xtask build` stamps in at compile time (`MULTUS_VERSION`, `MULTUS_COMMIT`,
//! `MULTUS_DATE`, and the pinned compiler `MULTUS_RUSTC`), or the crate version for a plain
//! `cargo build`, in upstream's shape (`multus-cni version:V, commit:C, date:D`, prefixed with
//! `<bin>: ` as upstream's shim and daemon do) followed by our own facts (`binary:`, `arch:`,
//! `rustc:`).

use crate::prelude::*;

/// The architecture, as `std::env::consts::ARCH` names it (which `no_std` code cannot use).
pub const ARCH: &str = if cfg!(target_arch = "x86_64") {
    "x86_64"
} else if cfg!(target_arch = "aarch64") {
    "aarch64"
} else if cfg!(target_arch = "arm") {
    "arm"
} else if cfg!(target_arch = "powerpc64") {
    "powerpc64"
} else if cfg!(target_arch = "s390x") {
    "s390x"
} else {
    "unknown"
};

/// The compiler `cargo xtask build` used (`rustup 1.95.0`, `debian 1.85.0`), or `unknown`.
pub const RUSTC: &str = match option_env!("MULTUS_RUSTC") {
    Some(r) => r,
    None => "unknown",
};

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

/// The build's date (RFC 3339, from SOURCE_DATE_EPOCH), or upstream's `unknown date`.
pub const DATE: &str = match option_env!("MULTUS_DATE") {
    Some(d) => d,
    None => "unknown date",
};

/// The version line of binary `bin`: upstream's `PrintVersionString` (the thin plugin prints it
/// bare, every other binary after `<bin>: `), then what upstream does not say.
pub fn version_line(bin: &str) -> String {
    let prefix = if bin == "multus" { String::new() } else { format!("{bin}: ") };
    format!(
        "{prefix}multus-cni version:{VERSION}, commit:{COMMIT}, date:{DATE}, binary:{bin}, arch:{ARCH}, rustc:{RUSTC}"
    )
}

/// True when the command line asks for the version, read as Go's `flag`/`pflag` read upstream's
/// `-version`/`-v` booleans: one or two dashes, `=value` with `strconv.ParseBool`'s values, the
/// last one wins; nothing after `--` is a flag.
pub fn wants_version(args: &[String]) -> bool {
    let mut wanted = false;
    for a in args.iter().skip(1) {
        if a == "--" {
            break;
        }
        if !a.starts_with('-') || a == "-" {
            continue;
        }
        let flag = a.trim_start_matches('-');
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        if name == "version" || name == "v" {
            wanted = match value {
                None => true,
                Some(v) => crate::golang::parse_bool(v).unwrap_or(false),
            };
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("multus").chain(a.iter().copied()).map(String::from).collect()
    }

    #[test]
    fn go_flag_syntax() {
        for yes in [
            &["-version"][..],
            &["--version"],
            &["-v"],
            &["--v"],
            &["-version=true"],
            &["-v=1"],
            &["-x", "-v"],
            &["--cni-bin-dir", "/x", "--version"],
        ] {
            assert!(wants_version(&args(yes)), "{yes:?}");
        }
        for no in [&[][..], &["-version=false"], &["-v=0"], &["-v", "-v=false"], &["--", "-v"], &["-verbose"]] {
            assert!(!wants_version(&args(no)), "{no:?}");
        }
    }

    #[test]
    fn upstreams_shape_first() {
        let multus = version_line("multus");
        assert!(multus.starts_with(&format!("multus-cni version:{VERSION}, commit:{COMMIT}, date:")), "{multus}");
        assert!(version_line("multus-shim").starts_with("multus-shim: multus-cni version:"));
        assert!(
            multus.ends_with(&format!(", binary:multus, arch:{}, rustc:{RUSTC}", std::env::consts::ARCH)),
            "{multus}"
        );
    }
}
