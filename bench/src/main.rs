//! `helix-bench`: helpers for the scripts in `bench/`: deterministic test
//! content, a free port, the rollback-under-load probe and the route
//! evaluation benchmark.

mod generate;
mod rollback;
mod routes;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "helix-bench", about = "Helpers for the HelixStack benchmarks in bench/")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write `1k.bin` and `100k.bin` (random bytes) and `index.html` into DIR.
    GenStatic {
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write a site of text and binary files into DIR; prints the bytes written.
    GenSite {
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        files: usize,
        #[arg(long, default_value_t = 20_000_000)]
        bytes: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print a TCP port that is free on 127.0.0.1 right now.
    FreePort,
    /// Measure a rollback under constant load; prints one JSON object.
    Rollback(rollback::Args),
    /// Route evaluation cost with N rules: ns per request.
    Routes {
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        rules: Vec<usize>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::GenStatic { dir, seed } => generate::static_files(&dir, seed),
        Command::GenSite { dir, files, bytes, seed } => {
            println!("{}", generate::site(&dir, files, bytes, seed)?);
            Ok(())
        }
        Command::FreePort => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
            Ok(())
        }
        Command::Rollback(args) => tokio::runtime::Runtime::new()?.block_on(rollback::run(args)),
        Command::Routes { rules } => {
            routes::run(&rules);
            Ok(())
        }
    }
}
