//! `sightline`: the server binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sightline_server::{Server, ServerConfig};

#[derive(Parser)]
#[command(
    name = "sightline",
    about = "Event store and query server for community gate sensing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API over a store.
    Serve {
        /// Store directory; created if missing.
        #[arg(long, env = "SIGHTLINE_DATA")]
        data: PathBuf,
        /// Address to listen on; port 0 picks a free port. The first line on stdout is
        /// `listening on http://ADDR`.
        #[arg(long, env = "SIGHTLINE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Largest request body in bytes.
        #[arg(long, default_value_t = 16 << 20)]
        max_body_bytes: usize,
        /// Most records in one ingest request.
        #[arg(long, default_value_t = 100_000)]
        max_batch_records: usize,
        /// Drop whole shards older than this many days (default: keep everything).
        #[arg(long)]
        retention_days: Option<u32>,
    },
}

fn main() -> ExitCode {
    tracing_init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            data,
            listen,
            max_body_bytes,
            max_batch_records,
            retention_days,
        } => {
            let mut config = ServerConfig::new(data, listen);
            config.max_body_bytes = max_body_bytes;
            config.max_batch_records = max_batch_records;
            config.store.retention_days = retention_days;
            serve(config)
        }
    }
}

fn serve(config: ServerConfig) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sightline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sightline: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on http://{}", server.local_addr());
        server.run(shutdown_signal()).await;
        eprintln!("sightline: stopped");
        ExitCode::SUCCESS
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Logs go to stderr; stdout carries only the `listening on` line.
fn tracing_init() {}
