//! `install_multus`: the DaemonSets' init container. Copies `multus-shim` (`-t thick`) or
//! `multus` (`-t thin`), then `passthru`, from the image into the host's CNI bin dir, each by temp
//! file + rename so a binary the runtime is executing is replaced safely (`Text file busy`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use multus_core::build_info;
use multus_core::confgen::install::{self, Flavor};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Type {
    Thick,
    Thin,
}

/// Installs the multus plugin binaries onto the host.
#[derive(Debug, Parser)]
#[command(name = "install_multus")]
struct Args {
    /// specify installer type (thick/thin)
    #[arg(short = 't', long = "type", value_enum)]
    kind: Type,
    /// destination directory
    #[arg(short = 'd', long, default_value = install::DEST_DIR)]
    dest_dir: PathBuf,
    /// where the binaries are taken from (the image's layout by default)
    #[arg(long, hide = true, default_value = install::SOURCE_DIR)]
    source_dir: PathBuf,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if build_info::wants_version(&argv) {
        println!("{}", build_info::version_line("install_multus"));
        return ExitCode::SUCCESS;
    }
    let args = Args::parse_from(&argv);
    let flavor = match args.kind {
        Type::Thick => Flavor::Thick,
        Type::Thin => Flavor::Thin,
    };
    match install::install(flavor, &args.source_dir, &args.dest_dir) {
        Ok(paths) => {
            for p in paths {
                println!("installed {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("install_multus: {e}");
            ExitCode::FAILURE
        }
    }
}
