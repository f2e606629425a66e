//! `sightline`: the server binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: ingest allocates and frees many small strings and maps per event, and
/// large per-request buffers; glibc's allocator spent a quarter of the server's CPU on
/// that (and the kernel another tenth zeroing pages it returned and took back).
///
/// Built with `no_thp`: mimalloc otherwise advises transparent huge pages on its
/// arenas, and the kernel's khugepaged then fills the pages mimalloc had returned back
/// in, 2 MiB at a time, while the server is idle: resident memory crept up by 100 MiB
/// in 4 minutes after a soak's load stopped, with nothing allocated (RELIABILITY.md,
/// "Soak").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sightline_server::config::Settings;
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
    /// Serve the HTTP API over a store. Settings come from flags, then environment
    /// variables, then `--config FILE` (TOML, the same names), then defaults.
    Serve {
        /// A TOML file of settings (keys as the flags, with underscores).
        #[arg(long, env = "SIGHTLINE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Verify every checksum of a stopped store offline, changing nothing; exit 1 on
    /// damage, naming each damaged file.
    Check {
        /// The store directory.
        dir: PathBuf,
    },
    /// Manage API keys with the server stopped (the store is locked while it runs): to
    /// create the first admin key. A running server manages keys at `/v1/keys`.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Check the audit log's hash chain.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Write a synthetic city's traffic to files for other tools: NDJSON (the body of
    /// `POST /v1/events`), GA/T 1400 upload bodies, and the planted answers.
    Gen {
        /// Directory to write into (created): events/day-NNN.ndjson,
        /// gat1400/day-NNN-motorvehicles.json, gat1400/day-NNN-faces.json, truth.json.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        communities: u32,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Households per community (about 6 events each a day).
        #[arg(long, default_value_t = 400)]
        households: u32,
        /// Formats: ndjson, gat1400 (comma-separated); none to only count.
        #[arg(long, value_delimiter = ',', default_value = "ndjson,gat1400")]
        format: Vec<String>,
        /// The city as recorded for the benchmarks: no planted answers, no drivers.
        #[arg(long)]
        plain: bool,
        /// A 48-digit GA/T 1400 style `source_id` attribute on every camera event (as
        /// `sightline demo` stores), for space comparisons.
        #[arg(long)]
        source_ids: bool,
    },
    /// A role of a cluster node: `ingest`, `index` or `query` (built with feature
    /// `cluster`).
    #[cfg(feature = "cluster")]
    Cluster {
        #[command(subcommand)]
        role: ClusterRole,
    },
    /// Serve a synthetic month of the 10 Gusu pilot communities and print example
    /// `curl` commands. The data stays in `--data`; a second run reuses it.
    Demo {
        #[arg(long, default_value = "sightline-demo")]
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

/// The roles of a cluster node (feature `cluster`).
#[cfg(feature = "cluster")]
#[derive(Subcommand)]
enum ClusterRole {
    /// `POST /v1/events` into NATS JetStream (answered after every PubAck).
    Ingest {
        /// The cluster's TOML file (`ARCHITECTURE.md`, "Cluster").
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
    },
    /// Hold partitions by lease: log → local stores → segments on S3, committed in
    /// PostgreSQL.
    Index {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
    },
    /// The investigator query endpoints over HTTP, each answered by asking the
    /// indexers holding the partitions and merging their answers.
    Query {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
    },
    /// Several roles in one process (`--roles ingest,index,query`), each as its own
    /// subcommand runs it on the one configuration, all stopped together: by SIGTERM
    /// or Ctrl-C, or when one of them ends (an error in one stops the others).
    Run {
        /// The roles, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<RoleName>,
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
    },
    /// Manage the cluster's API keys (PostgreSQL table `api_keys`, read by every
    /// query and ingest node within `index.renew_ms`): only its PostgreSQL needs to
    /// answer; the nodes go on running.
    Keys {
        #[command(subcommand)]
        action: ClusterKeysAction,
    },
    /// Manage the devices GA/T 1400 objects name and their digest credentials
    /// (PostgreSQL tables `devices`, `gat1400_credentials`, read by every ingest node
    /// within `index.renew_ms`), as `PUT /v1/devices/{code}` does on `serve`.
    Gat1400 {
        #[command(subcommand)]
        action: ClusterGat1400Action,
    },
    /// The cluster's community and device catalog (PostgreSQL tables `communities`
    /// and `devices`, which query nodes list and admins change over HTTP).
    Catalog {
        #[command(subcommand)]
        action: ClusterCatalogAction,
    },
}

/// A role `sightline cluster run --roles` runs (feature `cluster`).
#[cfg(feature = "cluster")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RoleName {
    Ingest,
    Index,
    Query,
}

/// `sightline cluster gat1400 …` (feature `cluster`).
#[cfg(feature = "cluster")]
#[derive(Subcommand)]
enum ClusterGat1400Action {
    /// Add or replace a device; with a password, the digest credential it registers
    /// with (only its HA1 is kept).
    Add {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        device: sightline_server::cluster::NewDevice,
    },
    /// List devices, one JSON object a line (never a credential).
    List {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
    },
    /// Remove a device, its credential and its registration.
    Remove {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
        code: String,
    },
}

/// `sightline cluster catalog …` (feature `cluster`).
#[cfg(feature = "cluster")]
#[derive(Subcommand)]
enum ClusterCatalogAction {
    /// Copy every community and device of a `sightline serve` store's catalog (the
    /// server stopped) into the cluster's, replacing those of the same codes; prints
    /// how many. Devices' GA/T 1400 logins come along (their HA1, for the ingest
    /// nodes' gateway), and platforms' relays.
    Import {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
        /// The store's data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

/// `sightline cluster keys …` (feature `cluster`): as `sightline keys`, against the
/// cluster's PostgreSQL named in `--config`.
#[cfg(feature = "cluster")]
#[derive(Subcommand)]
enum ClusterKeysAction {
    /// Create a key and print its token (shown once; only its hash is kept).
    Create {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
        /// ingest, investigate or admin.
        #[arg(long)]
        role: String,
        /// Communities the key may see or write (comma-separated); all when omitted.
        #[arg(long, value_delimiter = ',')]
        communities: Option<Vec<String>>,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys (never their tokens).
    List {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
    },
    /// Revoke a key by id (in force on every node within `index.renew_ms`).
    Revoke {
        #[arg(long, env = "SIGHTLINE_CLUSTER_CONFIG")]
        config: PathBuf,
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print its token (shown once; only its hash is kept).
    Create {
        #[arg(long)]
        data: PathBuf,
        /// ingest, investigate or admin.
        #[arg(long)]
        role: String,
        /// Communities the key may see (comma-separated); all when omitted.
        #[arg(long, value_delimiter = ',')]
        communities: Option<Vec<String>>,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys (never their tokens).
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Revoke a key by id.
    Revoke {
        #[arg(long)]
        data: PathBuf,
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Verify every entry's hash and link, that the chain reaches the head kept in the
    /// catalog (truncation, deletion) and, with a witness key, every witness line (a
    /// rewrite); exit 1 naming the file and what is wrong. The server must be stopped
    /// (the catalog is opened by one process at a time).
    Verify {
        #[arg(long)]
        data: PathBuf,
        /// The key the server signed the head with (`--audit-witness-key`).
        #[arg(long)]
        witness_key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, settings } => serve_settings(config, *settings),
        Command::Demo {
            data,
            listen,
            days,
            communities,
        } => {
            // A local user's demo: no keys, on loopback (a wider address is refused).
            let mut config = ServerConfig::new(data, listen);
            config.no_auth = true;
            serve(config, Some((days, communities)))
        }
        Command::Keys { action } => keys(action),
        Command::Gen {
            out,
            communities,
            days,
            seed,
            households,
            format,
            plain,
            source_ids,
        } => {
            let cfg = sightline_synth::TrafficConfig {
                seed,
                communities,
                days,
                households_per_community: households,
                drivers: !plain,
                planted: !plain,
                source_ids,
                ..Default::default()
            };
            gen(&cfg, &out, &format)
        }
        Command::Check { dir } => check(&dir),
        #[cfg(feature = "cluster")]
        Command::Cluster { role } => cluster(role),
        Command::Audit {
            action: AuditAction::Verify { data, witness_key },
        } => audit_verify(&data, witness_key.as_deref()),
    }
}

/// `sightline cluster run --roles …`: the roles named, on one runtime, one
/// configuration (one PostgreSQL pool, one `[tls]`), each stopped when `stop`
/// completes or when any of them ends; the first error, naming its role.
#[cfg(feature = "cluster")]
async fn run_roles(
    config: sightline_cluster::ClusterConfig,
    roles: &[RoleName],
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let (ending, ended) = tokio::sync::watch::channel(false);
    let one = |role: RoleName| {
        let (config, ending) = (config.clone(), ending.clone());
        let mut ended = ended.clone();
        let wanted = roles.contains(&role);
        async move {
            if !wanted {
                return Ok(());
            }
            let stop = async move {
                let _ = ended.wait_for(|e| *e).await;
            };
            let done = match role {
                RoleName::Ingest => sightline_server::cluster::run_ingest(config, stop).await,
                RoleName::Index => sightline_server::cluster::run_index(config, stop).await,
                RoleName::Query => sightline_server::cluster::run_query(config, stop).await,
            };
            // One role ended (its error, or a stop): the others stop with it.
            let _ = ending.send(true);
            done.map_err(|e| format!("{}: {e}", format!("{role:?}").to_lowercase()))
        }
    };
    let all = async {
        tokio::join!(
            one(RoleName::Ingest),
            one(RoleName::Index),
            one(RoleName::Query)
        )
    };
    tokio::pin!(all);
    let (a, b, c) = tokio::select! {
        done = &mut all => done,
        _ = stop => {
            let _ = ending.send(true);
            all.await
        }
    };
    a.and(b).and(c)
}

/// `sightline cluster ingest|index|query`: runs the role until SIGTERM or Ctrl-C;
/// `sightline cluster keys …`: manages the cluster's keys.
#[cfg(feature = "cluster")]
fn cluster(role: ClusterRole) -> ExitCode {
    let path = match &role {
        ClusterRole::Ingest { config }
        | ClusterRole::Index { config }
        | ClusterRole::Query { config }
        | ClusterRole::Run { config, .. } => config.clone(),
        ClusterRole::Keys { action } => match action {
            ClusterKeysAction::Create { config, .. }
            | ClusterKeysAction::List { config }
            | ClusterKeysAction::Revoke { config, .. } => config.clone(),
        },
        ClusterRole::Gat1400 { action } => match action {
            ClusterGat1400Action::Add { config, .. }
            | ClusterGat1400Action::List { config }
            | ClusterGat1400Action::Remove { config, .. } => config.clone(),
        },
        ClusterRole::Catalog {
            action: ClusterCatalogAction::Import { config, .. },
        } => config.clone(),
    };
    // The roles' state changes (leases, commits, fencing) are log lines on stderr
    // (`tracing_init`).
    let config = match sightline_cluster::ClusterConfig::from_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sightline: {e}");
            return ExitCode::from(2);
        }
    };
    // `[tls]`: its files read now (a bad one refused, named), and every connection
    // of this process to PostgreSQL, NATS, S3 and other nodes made with them.
    if let Some(tls) = &config.tls {
        if let Err(e) = sightline_cluster::tls::install(tls) {
            eprintln!("sightline: {e}");
            return ExitCode::from(2);
        }
    }
    // One bounded pool of PostgreSQL connections for every task of this process
    // (`postgres_pool_size`, `postgres_wait_ms`).
    sightline_cluster::meta::configure_pool(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sightline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let role = match role {
        ClusterRole::Keys { action } => return runtime.block_on(cluster_keys(&config, action)),
        ClusterRole::Gat1400 { action } => {
            return runtime.block_on(cluster_devices(&config, action))
        }
        ClusterRole::Catalog { action } => {
            return runtime.block_on(cluster_catalog(&config, action))
        }
        role => role,
    };
    // Police data about residents: what a node writes (replicas, the audit log) is
    // readable by its own user only, as `serve`'s.
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail and
    // touches no memory. Set before any task that creates files starts.
    unsafe {
        libc::umask(0o077);
    }
    let result = runtime.block_on(async move {
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        match role {
            ClusterRole::Ingest { .. } => sightline_server::cluster::run_ingest(config, stop).await,
            ClusterRole::Index { .. } => sightline_server::cluster::run_index(config, stop).await,
            ClusterRole::Query { .. } => sightline_server::cluster::run_query(config, stop).await,
            ClusterRole::Run { roles, .. } => run_roles(config, &roles, stop).await,
            ClusterRole::Keys { .. }
            | ClusterRole::Gat1400 { .. }
            | ClusterRole::Catalog { .. } => {
                unreachable!("answered above")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The longest key name, in bytes, and most communities one key may be scoped to
/// (as `POST /v1/keys`).
#[cfg(feature = "cluster")]
const MAX_KEY_NAME_BYTES: usize = 200;
#[cfg(feature = "cluster")]
const MAX_KEY_COMMUNITIES: usize = 1000;

/// `sightline cluster keys create|list|revoke`: the `api_keys` table of the cluster's
/// PostgreSQL (created with the other tables if this is the first node).
#[cfg(feature = "cluster")]
async fn cluster_keys(
    config: &sightline_cluster::ClusterConfig,
    action: ClusterKeysAction,
) -> ExitCode {
    use sightline_cluster::meta::bounded;
    use sightline_server::auth;
    // The arguments first, before anything is asked of PostgreSQL.
    if let ClusterKeysAction::Create {
        role,
        communities,
        name,
        ..
    } = &action
    {
        if auth::Role::parse(role).is_none() {
            eprintln!("sightline: --role: unknown role {role:?}; use ingest, investigate or admin");
            return ExitCode::from(2);
        }
        if name.len() > MAX_KEY_NAME_BYTES {
            eprintln!("sightline: --name: at most {MAX_KEY_NAME_BYTES} bytes");
            return ExitCode::from(2);
        }
        if let Some(c) = communities {
            if c.is_empty() || c.len() > MAX_KEY_COMMUNITIES || c.iter().any(|x| x.is_empty()) {
                eprintln!(
                    "sightline: --communities: 1 to {MAX_KEY_COMMUNITIES} community codes, none empty (omit it for every community)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let within = CLI_POSTGRES_WITHIN;
    let Some(meta) = cli_meta(config).await else {
        return ExitCode::FAILURE;
    };
    let result = match action {
        ClusterKeysAction::Create {
            role,
            communities,
            name,
            ..
        } => {
            let role = auth::Role::parse(&role).expect("checked above");
            // The database sets the creation time.
            let (record, token) = auth::new_key(&name, role, communities, 0);
            bounded(within, "add an API key", meta.add_api_key(&record))
                .await
                .map(|k| {
                    println!("{token}");
                    eprintln!(
                        "created key {} ({}); keep the token above: it is not stored and cannot be shown again; every node lets it in within index.renew_ms",
                        k.id, k.role
                    );
                })
        }
        ClusterKeysAction::List { .. } => bounded(within, "read API keys", meta.api_keys())
            .await
            .map(|keys| print_keys(&keys)),
        ClusterKeysAction::Revoke { id, .. } => {
            match bounded(within, "revoke an API key", meta.revoke_api_key(&id)).await {
                Ok(Some(_)) => {
                    eprintln!("revoked {id}; every node refuses it within index.renew_ms");
                    Ok(())
                }
                Ok(None) => {
                    eprintln!("sightline: no key {id}");
                    return ExitCode::FAILURE;
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sightline cluster gat1400 add|list|remove`.
#[cfg(feature = "cluster")]
async fn cluster_devices(
    config: &sightline_cluster::ClusterConfig,
    action: ClusterGat1400Action,
) -> ExitCode {
    use sightline_server::cluster::{manage_devices, DeviceAction};
    let action = match action {
        ClusterGat1400Action::Add { device, .. } => DeviceAction::Add(device),
        ClusterGat1400Action::List { .. } => DeviceAction::List,
        ClusterGat1400Action::Remove { code, .. } => DeviceAction::Remove { code },
    };
    match manage_devices(config, action).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long the CLI waits for each PostgreSQL call.
#[cfg(feature = "cluster")]
const CLI_POSTGRES_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection to the cluster's PostgreSQL, its tables created if this is the first
/// node; `None` (said on stderr) when it does not answer.
#[cfg(feature = "cluster")]
async fn cli_meta(
    config: &sightline_cluster::ClusterConfig,
) -> Option<sightline_cluster::meta::Meta> {
    use sightline_cluster::meta::{bounded, Meta};
    let within = CLI_POSTGRES_WITHIN;
    let meta = async {
        let mut meta = Meta::connect_within(&config.postgres, within).await?;
        bounded(within, "create the tables", meta.create(config.partitions)).await?;
        Ok::<_, sightline_cluster::ClusterError>(meta)
    };
    match meta.await {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("sightline: the cluster's PostgreSQL: {e}");
            None
        }
    }
}

/// `sightline cluster catalog import`: a stopped store's communities, then its
/// devices (a device's community must be there first), into the cluster's tables.
#[cfg(feature = "cluster")]
async fn cluster_catalog(
    config: &sightline_cluster::ClusterConfig,
    action: ClusterCatalogAction,
) -> ExitCode {
    use sightline_cluster::meta::bounded;
    use sightline_storage::Catalog;
    let ClusterCatalogAction::Import { data, .. } = action;
    // The catalog alone (no replay of the store); sled refuses it while a server runs.
    let store = match sightline_storage::SledCatalog::open(&data.join("catalog")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "sightline: cannot open the catalog of {}: {e} (is the server running?)",
                data.display()
            );
            return ExitCode::FAILURE;
        }
    };
    // Each device with its GA/T 1400 login, if it has one (HA1 only, as stored), and
    // its relays: a platform's as `serve` keeps them (none replaces the cluster's too),
    // none for any other kind (as `PUT /v1/devices` clears them).
    let with_logins = |devices: Vec<sightline_storage::Device>| {
        devices
            .into_iter()
            .map(|d| {
                let login = store
                    .gat1400_credential(&d.code)
                    .map_err(|e| e.to_string())?;
                let relays = match d.device_kind.as_str() {
                    "platform" => sightline_server::gat1400::relays_in(&store, &d.code)?,
                    _ => Default::default(),
                };
                let relays = Some(relays);
                Ok((d, login, relays))
            })
            .collect::<Result<Vec<_>, String>>()
    };
    let devices = store
        .devices()
        .map_err(|e| e.to_string())
        .and_then(with_logins);
    let (communities, devices) = match (store.communities().map_err(|e| e.to_string()), devices) {
        (Ok(c), Ok(d)) => (c, d),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("sightline: reading the catalog of {}: {e}", data.display());
            return ExitCode::FAILURE;
        }
    };
    let Some(meta) = cli_meta(config).await else {
        return ExitCode::FAILURE;
    };
    let within = CLI_POSTGRES_WITHIN;
    let copied = async {
        for c in &communities {
            bounded(within, "register a community", meta.put_community(c)).await?;
        }
        for (d, login, relays) in &devices {
            let put = meta.put_device(d, relays.as_ref());
            bounded(within, "register a device", put).await?;
            if let Some(c) = login {
                let put = meta.put_gat1400_credential(c);
                bounded(within, "put a GA/T 1400 credential", put).await?;
            }
        }
        Ok::<_, sightline_cluster::ClusterError>(())
    };
    match copied.await {
        Ok(()) => {
            println!(
                "{} communities, {} devices copied into the cluster's catalog",
                communities.len(),
                devices.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One line per key: id, role, communities, state, name.
fn print_keys(keys: &[sightline_storage::ApiKeyRecord]) {
    for k in keys {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            k.id,
            k.role,
            k.communities
                .as_ref()
                .map_or("all".to_string(), |c| c.join(",")),
            if k.revoked_ms.is_some() {
                "revoked"
            } else {
                "active"
            },
            k.name
        );
    }
}

/// `sightline serve`: flags and environment over the settings file over defaults.
fn serve_settings(config: Option<PathBuf>, settings: Settings) -> ExitCode {
    let from_file = match config.as_deref().map(Settings::from_file).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("sightline: {e}");
            return ExitCode::from(2);
        }
    };
    match settings.over(from_file).server_config() {
        Ok(config) => serve(config, None),
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::from(2)
        }
    }
}

/// `sightline gen`: the synthetic city written as files.
fn gen(cfg: &sightline_synth::TrafficConfig, out: &std::path::Path, format: &[String]) -> ExitCode {
    for f in format {
        if !["ndjson", "gat1400", "none"].contains(&f.as_str()) {
            eprintln!("sightline: unknown format {f:?}; use ndjson, gat1400 or none");
            return ExitCode::from(2);
        }
    }
    match sightline_synth::write_dataset(cfg, out, format) {
        Ok((n, secs)) => {
            println!(
                "{n} events over {} days and {} communities in {secs:.1} s ({:.0} events/s) into {}",
                cfg.days,
                cfg.communities,
                n as f64 / secs,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sightline check DIR`: every checksum of a stopped store.
fn check(dir: &std::path::Path) -> ExitCode {
    let r = match sightline_storage::check(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sightline: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}: {} segments ({} events), {} WAL files ({} records), {} dictionary records, {} pictures",
        dir.display(),
        r.segments,
        r.segment_events,
        r.wal_files,
        r.wal_records,
        r.dict_records,
        r.pictures
    );
    for t in &r.torn_tails {
        println!(
            "torn tail (a crash mid-write; recovery drops it): {}",
            t.display()
        );
    }
    for o in &r.orphans {
        println!(
            "file not in the manifest (recovery removes it): {}",
            o.display()
        );
    }
    for p in &r.problems {
        println!("DAMAGED: {p}");
    }
    // The index checkpoint, against every event the segments and the WAL hold.
    let io = sightline_storage::io::os();
    let index = sightline_index::verify_checkpoint(dir, &*io, |layout, f| {
        sightline_storage::check_rows(dir, layout, f).map_err(|e| e.to_string())
    });
    let index_ok = match index {
        Ok(Some(c)) => {
            println!(
                "index checkpoint agrees with the events: {} subjects in {} shards, events up to seq {}",
                c.subjects, c.shards, c.through
            );
            true
        }
        Ok(None) => {
            println!("no index checkpoint (the server rebuilds it from the events)");
            true
        }
        Err(e) => {
            println!("DAMAGED (the server rebuilds it from the events): {e}");
            false
        }
    };
    if r.ok() && index_ok {
        println!("every checksum verified");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `sightline audit verify --data DATA [--witness-key FILE]`.
fn audit_verify(data: &std::path::Path, witness_key: Option<&std::path::Path>) -> ExitCode {
    use sightline_server::audit;
    let run = || -> Result<audit::Report, audit::AuditError> {
        let key = witness_key.map(audit::WitnessKey::load).transpose()?;
        let heads: Box<dyn audit::HeadStore> = match audit::catalog_heads(data)? {
            Some(catalog) => Box::new(catalog),
            None => Box::new(audit::MemoryHead::default()),
        };
        audit::verify(data, heads.as_ref(), key.as_ref())
    };
    match run() {
        Ok(r) => {
            println!(
                "{}: {} entries, chain intact, reaching the head kept in the catalog (entry {})",
                data.join(audit::FILE).display(),
                r.entries,
                r.head.as_ref().map_or(0, |h| h.seq)
            );
            if let Some(w) = r.witnessed {
                println!("witnessed through entry {w}: every witness line matches");
            }
            if r.torn_bytes > 0 {
                println!(
                    "torn last line of {} bytes (a write cut short; the server cuts it at start)",
                    r.torn_bytes
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keys(action: KeysAction) -> ExitCode {
    use sightline_server::auth;
    use sightline_storage::{Store, StoreConfig};
    let data = match &action {
        KeysAction::Create { data, .. }
        | KeysAction::List { data }
        | KeysAction::Revoke { data, .. } => data.clone(),
    };
    let store = match Store::open(&data, StoreConfig::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "sightline: cannot open {}: {e} (is the server running?)",
                data.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let now = sightline_server::now_ms();
    let result = match action {
        KeysAction::Create {
            role,
            communities,
            name,
            ..
        } => {
            let Some(role) = auth::Role::parse(&role) else {
                eprintln!("sightline: unknown role {role:?}; use ingest, investigate or admin");
                return ExitCode::from(2);
            };
            auth::create(&store, &name, role, communities, now).map(|(k, token)| {
                println!("{token}");
                eprintln!(
                    "created key {} ({}); keep the token above: it is not stored and cannot be shown again",
                    k.id, k.role
                );
            })
        }
        KeysAction::List { .. } => store.catalog().api_keys().map(|keys| print_keys(&keys)),
        KeysAction::Revoke { id, .. } => match auth::revoke(&store, &id, now) {
            Ok(true) => {
                eprintln!("revoked {id}");
                Ok(())
            }
            Ok(false) => {
                eprintln!("sightline: no key {id}");
                return ExitCode::FAILURE;
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sightline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `config` until Ctrl-C or SIGTERM; for `sightline demo` (`demo` = days,
/// communities), first loads the synthetic traffic into an empty store and prints
/// example requests after the `listening on` line.
/// Police data about residents: what the server creates is readable by its own user
/// only (directories 0700, files 0600), and so is the data directory itself.
fn private_files(data: &std::path::Path) {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail and
    // touches no memory. Set before any thread that creates files starts.
    unsafe {
        libc::umask(0o077);
    }
    use std::os::unix::fs::PermissionsExt;
    if data.is_dir() {
        if let Err(e) = std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)) {
            eprintln!("sightline: cannot make {} private: {e}", data.display());
        }
    }
}

fn serve(config: ServerConfig, demo: Option<(u32, u32)>) -> ExitCode {
    private_files(&config.data);
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
        let base = format!("{}://{}", server.scheme(), server.local_addr());
        let examples = match demo {
            None => Vec::new(),
            Some((days, communities)) => {
                match load_demo(&server, &data, &base, days, communities).await {
                    Ok(examples) => examples,
                    Err(code) => return code,
                }
            }
        };
        if demo.is_some() {
            // The first thing a person trying Sightline reads: the console.
            println!("open {base}/ in a browser (the investigator console)");
        }
        println!("listening on {base}");
        if !examples.is_empty() {
            println!("\nTry (Ctrl-C stops the server):\n");
        }
        for (what, cmd) in examples {
            println!("# {what}\n{cmd}\n");
        }
        server.run(shutdown_signal()).await;
        eprintln!("sightline: stopped");
        ExitCode::SUCCESS
    })
}

/// Loads the demo month into an empty store; returns example requests against `base`.
async fn load_demo(
    server: &Server,
    data: &std::path::Path,
    base: &str,
    days: u32,
    communities: u32,
) -> Result<Vec<(String, String)>, ExitCode> {
    let now = sightline_server::now_ms();
    let month = sightline_synth::TrafficConfig::demo(now, days, communities);
    let (from, to) = (month.start_ms, sightline_synth::local_midnight(now));
    let store = server.store().clone();
    if store.shards().is_empty() {
        eprintln!(
            "loading {days} days of synthetic traffic for {communities} communities into {} …",
            data.display()
        );
        let t = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || demo::load(&store, &month)).await {
            Ok(Ok(n)) => eprintln!(
                "stored {n} events in {:.1} s (each batch fsynced before it was acknowledged)",
                t.elapsed().as_secs_f64()
            ),
            Ok(Err(e)) => {
                eprintln!("sightline: loading failed: {e}");
                return Err(ExitCode::FAILURE);
            }
            Err(e) => {
                eprintln!("sightline: loading panicked: {e}");
                return Err(ExitCode::FAILURE);
            }
        }
    } else {
        eprintln!(
            "{} already holds data; serving it (delete it to reload)",
            data.display()
        );
    }
    Ok(demo::examples(server.store(), base, from, to))
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

/// Logs (`tracing`: recovery, damaged files rebuilt, maintenance passes, failed
/// requests, the cluster roles' leases and commits) go to stderr; stdout carries only
/// the `listening on` line.
/// `SIGHTLINE_LOG` (`error`, `warn`, `info`, `debug` or `trace`; default `info`)
/// sets the least severe level written.
fn tracing_init() {
    let level = std::env::var("SIGHTLINE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(level)
        .init();
}
