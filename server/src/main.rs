//! `sightline`: the server binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sightline_server::{demo, Server, ServerConfig};

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
    /// Serve a synthetic month of the 10 Gusu pilot communities and print example
    /// `curl` commands. The data stays in `--data`; a second run reuses it.
    Demo {
        #[arg(long, default_value = "sightline-demo-data")]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Days of traffic, ending last midnight (+08:00).
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 10)]
        communities: u32,
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
        Command::Demo {
            data,
            listen,
            days,
            communities,
        } => demo(ServerConfig::new(data, listen), days, communities),
    }
}

fn demo(config: ServerConfig, days: u32, communities: u32) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sightline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let data = config.data.clone();
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sightline: {e}");
                return ExitCode::FAILURE;
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let month = demo::month(now, days, communities);
        let (from, to) = (month.start_ms, demo::local_midnight(now));
        let store = server.store().clone();
        if store.shards().is_empty() {
            eprintln!(
                "loading {days} days of synthetic traffic for {communities} communities into {} …",
                data.display()
            );
            let t = std::time::Instant::now();
            let loaded = tokio::task::spawn_blocking(move || demo::load(&store, &month)).await;
            match loaded {
                Ok(Ok(n)) => eprintln!(
                    "stored {n} events in {:.1} s (each batch fsynced before it was acknowledged)",
                    t.elapsed().as_secs_f64()
                ),
                Ok(Err(e)) => {
                    eprintln!("sightline: loading failed: {e}");
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("sightline: loading panicked: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            eprintln!(
                "{} already holds data; serving it (delete it to reload)",
                data.display()
            );
        }
        let base = format!("http://{}", server.local_addr());
        println!("listening on {base}");
        println!("\nTry (Ctrl-C stops the server):\n");
        for (what, cmd) in demo::examples(server.store(), &base, from, to) {
            println!("# {what}\n{cmd}\n");
        }
        server.run(shutdown_signal()).await;
        eprintln!("sightline: stopped");
        ExitCode::SUCCESS
    })
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
