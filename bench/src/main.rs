//! `helix-bench`: helpers for the scripts in `bench/`: deterministic test
//! content, a free port, the rollback-under-load probe, the route
//! evaluation benchmark, populating a server with many deployments, a
//! fixed-rate latency probe and promote timing.

mod generate;
mod load;
mod policy;
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
    /// Make many tiny deployments through the API; prints JSON.
    Populate(load::PopulateArgs),
    /// GET a host at a fixed rate; prints latency percentiles as JSON.
    Probe(load::ProbeArgs),
    /// Promote back and forth; prints the API's time and the edge wait.
    Promotes(load::PromoteArgs),
    /// Evaluate a 50-rule policy at a decision point; prints JSON.
    Policy(policy::Args),
    /// Write a `_redirects` of N `/p$i/* /q$i/:splat 301` rules to FILE.
    GenRules {
        file: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        rules: usize,
    },
    /// Route evaluation cost with N rules: ns per request.
    Routes {
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        rules: Vec<usize>,
    },
}

fn main() -> anyhow::Result<()> {
    // One TLS provider for the process (the API client is reqwest).
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        Command::Populate(args) => tokio::runtime::Runtime::new()?.block_on(load::populate(args)),
        Command::Probe(args) => tokio::runtime::Runtime::new()?.block_on(load::probe(args)),
        Command::Promotes(args) => tokio::runtime::Runtime::new()?.block_on(load::promotes(args)),
        Command::Policy(args) => tokio::runtime::Runtime::new()?.block_on(policy::run(args)),
        Command::GenRules { file, rules } => {
            let text: String = (0..rules).map(|i| format!("/p{i}/* /q{i}/:splat 301\n")).collect();
            std::fs::write(&file, text)?;
            Ok(())
        }
        Command::Routes { rules } => {
            routes::run(&rules);
            Ok(())
        }
    }
}
