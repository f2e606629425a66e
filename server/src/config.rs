//! `sightline serve` settings: a TOML file (`--config FILE`), under flags and
//! environment variables, under nothing else. One struct serves as all three, so a
//! setting cannot exist in one and be forgotten in another.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::ServerConfig;

/// Why the settings cannot make a server configuration; each names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("no store directory: give --data DIR, SIGHTLINE_DATA or `data` in the config file")]
    NoData,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("{0:?} is not a duration like 500ms, 30s, 5m or 1h")]
    NotADuration(String),
    #[error("{0:?} is not a positive duration")]
    NotPositive(String),
    #[error("viid_server_id {0:?} is not a GA/T 1400 id (a GB/T 28181 code): {1}")]
    ViidServerId(String, String),
    #[error("public_url {0:?} is not like http://host:port (no path)")]
    PublicUrl(String),
    #[error("{0}: {1}")]
    Networks(&'static str, String),
    #[error("--tls-cert and --tls-key go together: give both or neither")]
    TlsHalf,
    #[error("--tls-client-ca needs --tls-cert and --tls-key (client certificates are asked for in the TLS handshake)")]
    ClientCaWithoutTls,
}

/// A duration written `500ms`, `30s`, `5m`, `1h` (bare numbers are seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Dur, ConfigError> {
        let ms = crate::params::parse_window("duration", s)
            .map_err(|_| ConfigError::NotADuration(s.to_string()))?;
        match u64::try_from(ms) {
            Ok(ms) if ms > 0 => Ok(Dur(Duration::from_millis(ms))),
            _ => Err(ConfigError::NotPositive(s.to_string())),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Every setting of `sightline serve`; unset ones take [`ServerConfig`]'s defaults.
/// In the TOML file the keys are the field names (`max_body_bytes = 1048576`,
/// `query_timeout = "10s"`); unknown keys are refused.
#[derive(Clone, Debug, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Store directory; created if missing.
    #[arg(long, env = "SIGHTLINE_DATA")]
    pub data: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port. The first line on stdout is
    /// `listening on http://ADDR` (`https://` with TLS). [default: 127.0.0.1:8080]
    #[arg(long, env = "SIGHTLINE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Drop whole shards older than this many days, and refuse events that old. Kept
    /// in the store: without it the store's policy holds (at first: keep everything).
    #[arg(long, env = "SIGHTLINE_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Bound on the unsealed events of all shards together, in MiB: past it the
    /// largest memory part is sealed early, by the append that crossed it.
    /// [default: 1024]
    #[arg(long, env = "SIGHTLINE_MEMORY_BUDGET_MIB")]
    pub memory_budget_mib: Option<u64>,
    /// Largest request body in bytes. [default: 16777216]
    #[arg(long, env = "SIGHTLINE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// This server's 20-digit GA/T 1400 (视图库) id: `VIIDServerID` in `/VIID/System/Time`
    /// and the `User-Identify` of what it sends. [default: 32050000005030000001]
    #[arg(long, env = "SIGHTLINE_VIID_SERVER_ID")]
    pub viid_server_id: Option<String>,
    /// The address receivers reach this server at (`http://host:port`): pushed GA/T
    /// 1400 objects' picture URLs start with it. [default: http:// and the --listen
    /// address]
    #[arg(long, env = "SIGHTLINE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// GA/T 1400 uploads handled at once; more are answered busy. [default: 16]
    #[arg(long, env = "SIGHTLINE_MAX_CONCURRENT_VIID")]
    pub max_concurrent_viid: Option<usize>,
    /// Largest GA/T 1400 (`/VIID`) request body in bytes: uploads carry pictures.
    /// [default: 67108864]
    #[arg(long, env = "SIGHTLINE_MAX_VIID_BODY_BYTES")]
    pub max_viid_body_bytes: Option<usize>,
    /// Bytes of GA/T 1400 request bodies held in memory at once; more are answered
    /// busy. [default: 268435456]
    #[arg(long, env = "SIGHTLINE_MAX_VIID_INFLIGHT_BYTES")]
    pub max_viid_inflight_bytes: Option<usize>,
    /// Of the GA/T 1400 slots, the most one device or platform holds at once.
    /// [default: 8]
    #[arg(long, env = "SIGHTLINE_MAX_VIID_PER_CALLER")]
    pub max_viid_per_caller: Option<usize>,
    /// Largest picture of a GA/T 1400 object (decoded) in bytes. [default: 8388608]
    #[arg(long, env = "SIGHTLINE_MAX_PICTURE_BYTES")]
    pub max_picture_bytes: Option<usize>,
    /// Most records in one ingest request. [default: 100000]
    #[arg(long, env = "SIGHTLINE_MAX_BATCH_RECORDS")]
    pub max_batch_records: Option<usize>,
    /// Most rows one query answer may hold (`limit` above it is refused). [default: 10000]
    #[arg(long, env = "SIGHTLINE_MAX_RESULT_ROWS")]
    pub max_result_rows: Option<usize>,
    /// Ingest requests handled at once; more get 429. [default: 32]
    #[arg(long, env = "SIGHTLINE_MAX_CONCURRENT_INGEST")]
    pub max_concurrent_ingest: Option<usize>,
    /// Of the ingest slots, the most one API key holds at once. [default: 8]
    #[arg(long, env = "SIGHTLINE_MAX_INGEST_PER_KEY")]
    pub max_ingest_per_key: Option<usize>,
    /// Queries handled at once; more get 429. [default: 64]
    #[arg(long, env = "SIGHTLINE_MAX_CONCURRENT_QUERIES")]
    pub max_concurrent_queries: Option<usize>,
    /// A query running longer is stopped and answered 503 (checked between units of
    /// work). [default: 30s]
    #[arg(long, env = "SIGHTLINE_QUERY_TIMEOUT")]
    pub query_timeout: Option<Dur>,
    /// How often new subjects become searchable. [default: 1s]
    #[arg(long, env = "SIGHTLINE_VOCABULARY_REFRESH")]
    pub vocabulary_refresh: Option<Dur>,
    /// How often due shards are sealed and retention applied. [default: 60s]
    #[arg(long, env = "SIGHTLINE_MAINTENANCE_EVERY")]
    pub maintenance_every: Option<Dur>,
    /// How long shutdown waits for in-flight requests. [default: 30s]
    #[arg(long, env = "SIGHTLINE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<Dur>,
    /// Audit log files are rotated past this many bytes. [default: 64 MiB]
    #[arg(long, env = "SIGHTLINE_AUDIT_FILE_BYTES")]
    pub audit_file_bytes: Option<u64>,
    /// A request's head must arrive within this. [default: 10s]
    #[arg(long, env = "SIGHTLINE_HEADER_TIMEOUT")]
    pub header_timeout: Option<Dur>,
    /// A request's body must arrive within this (else 408). [default: 60s]
    #[arg(long, env = "SIGHTLINE_BODY_TIMEOUT")]
    pub body_timeout: Option<Dur>,
    /// The slowest a request body may arrive, in bytes a second (after 5 s); slower
    /// gets 408. 0: no floor. [default: 1024]
    #[arg(long, env = "SIGHTLINE_MIN_BODY_RATE")]
    pub min_body_rate: Option<u64>,
    /// Connections served at once (lowered to what `ulimit -n` allows). [default: 4096]
    #[arg(long, env = "SIGHTLINE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Wildcard and fuzzy watchlist entries of one community's lists (and of the
    /// unscoped ones), each at most this many. [default: 100000]
    #[arg(long, env = "SIGHTLINE_MAX_SCANNED_WATCH_ENTRIES")]
    pub max_scanned_watch_entries: Option<usize>,
    /// Entries of every watchlist together (exact, wildcard and fuzzy; each is held in
    /// memory): a list that would take them past it is refused. [default: 1000000]
    #[arg(long, env = "SIGHTLINE_MAX_WATCH_ENTRIES")]
    pub max_watch_entries: Option<usize>,
    /// The GA/T 1400 face field holding the subject (feature/archive id); faces
    /// without it use their FaceID. [default: ArchiveID]
    #[arg(long, env = "SIGHTLINE_GAT1400_FACE_SUBJECT")]
    pub gat1400_face_subject: Option<String>,
    /// Serve without API keys, anyone an admin: loopback addresses only, and only
    /// while the store has never held a key (once one was created, revoking the last
    /// closes the server). Without it and without keys every request is refused (401).
    #[arg(long, env = "SIGHTLINE_NO_AUTH")]
    #[serde(default)]
    pub no_auth: bool,
    /// Sign the audit log's head into DATA/audit.witness with the key in this file
    /// (32 bytes or more; keep it outside the data directory), so `sightline audit
    /// verify --witness-key FILE` finds a rewritten log.
    #[arg(long, env = "SIGHTLINE_AUDIT_WITNESS_KEY")]
    pub audit_witness_key: Option<PathBuf>,
    /// Serve HTTPS only, with this certificate chain (PEM, leaf first); reloaded on
    /// SIGHUP. Needs --tls-key. [default: none: plain HTTP]
    #[arg(long, env = "SIGHTLINE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). [default: none]
    #[arg(long, env = "SIGHTLINE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate signed by one of these CAs (PEM) in the TLS
    /// handshake (mTLS). [default: none: no client certificates]
    #[arg(long, env = "SIGHTLINE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Verify https:// subscription receivers against these CAs (PEM) only.
    /// [default: the Mozilla roots built in (webpki-roots)]
    #[arg(long, env = "SIGHTLINE_TLS_CA_BUNDLE")]
    pub tls_ca_bundle: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address although the store holds API keys
    /// (tokens and residents' data then cross the network in clear). [default: false]
    #[arg(long, env = "SIGHTLINE_ALLOW_PLAINTEXT")]
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Trust a GA/T 1400 registration's `User-Identify` from any address, not only
    /// the one that registered (a clustered platform sending from several nodes, as
    /// wvp-GB28181-pro and fliad-viid key on `User-Identify` alone): anyone who knows a
    /// registered code can then send as it without a digest. Never for object queries
    /// (`GET /VIID/Faces…`), which read residents' data: those take a registration only
    /// from the address that registered, else a digest on the query. [default: false]
    #[arg(long, env = "SIGHTLINE_VIID_REGISTRATION_ANY_ADDRESS")]
    #[serde(default)]
    pub viid_registration_any_address: bool,
    /// Networks (`CIDR,CIDR,…`) a platform's `ReceiveAddr` may point into although the
    /// default refuses them (loopback, link-local, …): e.g. `127.0.0.1/32` for a
    /// platform on this host when listening beyond loopback. [default: none; listening
    /// on a loopback address: 127.0.0.0/8,::1, every caller being on this host]
    #[arg(long, env = "SIGHTLINE_VIID_RECEIVE_ALLOW")]
    pub viid_receive_allow: Option<String>,
    /// Networks (`CIDR,CIDR,…`) a platform's `ReceiveAddr` may never point into, over
    /// any allow: e.g. `10.0.0.0/8` for an internal network platforms are not on.
    /// [default: none]
    #[arg(long, env = "SIGHTLINE_VIID_RECEIVE_DENY")]
    pub viid_receive_deny: Option<String>,
}

impl Settings {
    /// Reads a TOML settings file; errors name the file, and the key and line.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// These settings, with `base` filling in what they leave unset.
    pub fn over(self, base: Settings) -> Settings {
        Settings {
            data: self.data.or(base.data),
            listen: self.listen.or(base.listen),
            retention_days: self.retention_days.or(base.retention_days),
            memory_budget_mib: self.memory_budget_mib.or(base.memory_budget_mib),
            max_body_bytes: self.max_body_bytes.or(base.max_body_bytes),
            max_viid_body_bytes: self.max_viid_body_bytes.or(base.max_viid_body_bytes),
            viid_server_id: self.viid_server_id.or(base.viid_server_id),
            public_url: self.public_url.or(base.public_url),
            max_concurrent_viid: self.max_concurrent_viid.or(base.max_concurrent_viid),
            max_picture_bytes: self.max_picture_bytes.or(base.max_picture_bytes),
            max_viid_inflight_bytes: self
                .max_viid_inflight_bytes
                .or(base.max_viid_inflight_bytes),
            max_viid_per_caller: self.max_viid_per_caller.or(base.max_viid_per_caller),
            max_ingest_per_key: self.max_ingest_per_key.or(base.max_ingest_per_key),
            min_body_rate: self.min_body_rate.or(base.min_body_rate),
            max_connections: self.max_connections.or(base.max_connections),
            max_scanned_watch_entries: self
                .max_scanned_watch_entries
                .or(base.max_scanned_watch_entries),
            max_watch_entries: self.max_watch_entries.or(base.max_watch_entries),
            max_batch_records: self.max_batch_records.or(base.max_batch_records),
            max_result_rows: self.max_result_rows.or(base.max_result_rows),
            max_concurrent_ingest: self.max_concurrent_ingest.or(base.max_concurrent_ingest),
            max_concurrent_queries: self.max_concurrent_queries.or(base.max_concurrent_queries),
            query_timeout: self.query_timeout.or(base.query_timeout),
            vocabulary_refresh: self.vocabulary_refresh.or(base.vocabulary_refresh),
            maintenance_every: self.maintenance_every.or(base.maintenance_every),
            shutdown_grace: self.shutdown_grace.or(base.shutdown_grace),
            audit_file_bytes: self.audit_file_bytes.or(base.audit_file_bytes),
            gat1400_face_subject: self.gat1400_face_subject.or(base.gat1400_face_subject),
            header_timeout: self.header_timeout.or(base.header_timeout),
            body_timeout: self.body_timeout.or(base.body_timeout),
            no_auth: self.no_auth || base.no_auth,
            audit_witness_key: self.audit_witness_key.or(base.audit_witness_key),
            tls_cert: self.tls_cert.or(base.tls_cert),
            tls_key: self.tls_key.or(base.tls_key),
            tls_client_ca: self.tls_client_ca.or(base.tls_client_ca),
            tls_ca_bundle: self.tls_ca_bundle.or(base.tls_ca_bundle),
            allow_plaintext: self.allow_plaintext || base.allow_plaintext,
            viid_registration_any_address: self.viid_registration_any_address
                || base.viid_registration_any_address,
            viid_receive_allow: self.viid_receive_allow.or(base.viid_receive_allow),
            viid_receive_deny: self.viid_receive_deny.or(base.viid_receive_deny),
        }
    }

    /// The server configuration: these settings over the defaults. `data` is required;
    /// counts must be positive.
    pub fn server_config(self) -> Result<ServerConfig, ConfigError> {
        let data = self.data.ok_or(ConfigError::NoData)?;
        let mut c = ServerConfig::new(
            data,
            self.listen.unwrap_or_else(|| ([127, 0, 0, 1], 8080).into()),
        );
        c.store.retention_days = self.retention_days;
        if let Some(mib) = self.memory_budget_mib {
            if mib == 0 {
                return Err(ConfigError::Zero("memory_budget_mib"));
            }
            c.store.memory_budget_bytes = mib.saturating_mul(1 << 20);
        }
        let positive = |name: &'static str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(ConfigError::Zero(name)),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        c.max_body_bytes = positive("max_body_bytes", self.max_body_bytes, c.max_body_bytes)?;
        c.max_concurrent_viid = positive(
            "max_concurrent_viid",
            self.max_concurrent_viid,
            c.max_concurrent_viid,
        )?;
        c.max_viid_body_bytes = positive(
            "max_viid_body_bytes",
            self.max_viid_body_bytes,
            c.max_viid_body_bytes,
        )?;
        c.max_picture_bytes = positive(
            "max_picture_bytes",
            self.max_picture_bytes,
            c.max_picture_bytes,
        )?
        .min(sightline_storage::pictures::MAX_PICTURE_BYTES);
        c.max_batch_records = positive(
            "max_batch_records",
            self.max_batch_records,
            c.max_batch_records,
        )?;
        c.max_result_rows = positive("max_result_rows", self.max_result_rows, c.max_result_rows)?;
        c.max_concurrent_ingest = positive(
            "max_concurrent_ingest",
            self.max_concurrent_ingest,
            c.max_concurrent_ingest,
        )?;
        c.max_concurrent_queries = positive(
            "max_concurrent_queries",
            self.max_concurrent_queries,
            c.max_concurrent_queries,
        )?;
        c.max_viid_inflight_bytes = positive(
            "max_viid_inflight_bytes",
            self.max_viid_inflight_bytes,
            c.max_viid_inflight_bytes,
        )?;
        c.max_viid_per_caller = positive(
            "max_viid_per_caller",
            self.max_viid_per_caller,
            c.max_viid_per_caller,
        )?;
        c.max_ingest_per_key = positive(
            "max_ingest_per_key",
            self.max_ingest_per_key,
            c.max_ingest_per_key,
        )?;
        c.max_connections = positive("max_connections", self.max_connections, c.max_connections)?;
        c.max_scanned_watch_entries = positive(
            "max_scanned_watch_entries",
            self.max_scanned_watch_entries,
            c.max_scanned_watch_entries,
        )?;
        c.max_watch_entries = positive(
            "max_watch_entries",
            self.max_watch_entries,
            c.max_watch_entries,
        )?;
        c.min_body_rate = self.min_body_rate.unwrap_or(c.min_body_rate);
        if let Some(id) = self.viid_server_id {
            if let Err(e) = sightline_storage::DeviceCode::parse_checked(&id) {
                return Err(ConfigError::ViidServerId(id, e.to_string()));
            }
            c.viid_server_id = id;
        }
        if let Some(u) = self.public_url {
            let ok = u.parse::<hyper::Uri>().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some()
                    && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
            });
            if !ok {
                return Err(ConfigError::PublicUrl(u));
            }
            c.public_url = Some(u.trim_end_matches('/').to_string());
        }
        if let Some(f) = self.gat1400_face_subject {
            c.gat1400_face_subject = f;
        }
        c.no_auth = self.no_auth;
        c.audit_witness_key = self.audit_witness_key;
        c.tls = match (self.tls_cert, self.tls_key, self.tls_client_ca) {
            (Some(cert), Some(key), client_ca) => Some(crate::tls::TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            (None, None, Some(_)) => return Err(ConfigError::ClientCaWithoutTls),
            _ => return Err(ConfigError::TlsHalf),
        };
        c.tls_ca_bundle = self.tls_ca_bundle;
        c.allow_plaintext = self.allow_plaintext;
        c.viid_registration_any_address = self.viid_registration_any_address;
        let networks = |name: &'static str, v: Option<String>| {
            crate::http::egress::parse_networks(v.as_deref().unwrap_or(""))
                .map_err(|why| ConfigError::Networks(name, why))
        };
        c.viid_receive.allow = networks("viid_receive_allow", self.viid_receive_allow)?;
        c.viid_receive.deny = networks("viid_receive_deny", self.viid_receive_deny)?;
        if let Some(b) = self.audit_file_bytes {
            c.audit_file_bytes = b.max(1);
        }
        let dur = |d: Option<Dur>, default: Duration| d.map_or(default, |d| d.0);
        c.query_timeout = dur(self.query_timeout, c.query_timeout);
        c.vocabulary_refresh = dur(self.vocabulary_refresh, c.vocabulary_refresh);
        c.maintenance_every = dur(self.maintenance_every, c.maintenance_every);
        c.shutdown_grace = dur(self.shutdown_grace, c.shutdown_grace);
        c.header_timeout = dur(self.header_timeout, c.header_timeout);
        c.body_timeout = dur(self.body_timeout, c.body_timeout);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sightline.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_file_sets_what_flags_leave_unset_and_defaults_fill_the_rest() {
        let (_d, path) = file(
            "data = \"/srv/sightline\"\nlisten = \"127.0.0.1:9000\"\nretention_days = 180\n\
             max_body_bytes = 1048576\nquery_timeout = \"5s\"\n",
        );
        let from_file = Settings::from_file(&path).unwrap();
        let flags = Settings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            max_result_rows: Some(500),
            ..Default::default()
        };
        let c = flags.over(from_file).server_config().unwrap();
        assert_eq!(c.data, PathBuf::from("/srv/sightline"));
        assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap(), "the flag wins");
        assert_eq!(c.store.retention_days, Some(180));
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.max_result_rows, 500);
        assert_eq!(c.query_timeout, Duration::from_secs(5));
        let defaults = ServerConfig::new("x", "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.max_batch_records, defaults.max_batch_records);
        assert_eq!(c.shutdown_grace, defaults.shutdown_grace);
    }

    #[test]
    fn the_memory_budget_is_given_in_mib_and_defaults_to_one_gib() {
        let data = || Settings {
            data: Some("/srv/sightline".into()),
            ..Default::default()
        };
        let c = data().server_config().unwrap();
        assert_eq!(c.store.memory_budget_bytes, 1 << 30);
        let (_d, path) = file("memory_budget_mib = 64\n");
        let c = data()
            .over(Settings::from_file(&path).unwrap())
            .server_config()
            .unwrap();
        assert_eq!(c.store.memory_budget_bytes, 64 << 20);
        let zero = Settings {
            memory_budget_mib: Some(0),
            ..data()
        };
        assert!(zero.server_config().is_err());
    }

    #[test]
    fn receive_networks_are_read_from_the_file_and_a_bad_one_is_named() {
        let (_d, path) = file(
            "data = \"d\"\nviid_receive_allow = \"127.0.0.1/32, fd00::/8\"\n\
             viid_receive_deny = \"10.0.0.0/8\"\n",
        );
        let c = Settings::from_file(&path).unwrap().server_config().unwrap();
        let (allow, deny) = (&c.viid_receive.allow, &c.viid_receive.deny);
        assert_eq!(allow.len(), 2);
        assert_eq!(deny.len(), 1);
        assert!(c
            .viid_receive
            .refusal("10.1.1.1".parse().unwrap())
            .is_some());
        assert!(c
            .viid_receive
            .refusal("127.0.0.1".parse().unwrap())
            .is_none());
        assert!(c
            .viid_receive
            .refusal("127.0.0.2".parse().unwrap())
            .is_some());
        let bad = Settings {
            data: Some("d".into()),
            viid_receive_deny: Some("10.0.0.0/8,intranet".into()),
            ..Default::default()
        };
        let e = bad.server_config().unwrap_err().to_string();
        assert!(
            e.contains("viid_receive_deny") && e.contains("intranet"),
            "{e}"
        );
        let defaults = Settings {
            data: Some("d".into()),
            ..Default::default()
        };
        let c = defaults.server_config().unwrap();
        assert_eq!(c.viid_receive, crate::ReceivePolicy::default());
    }

    #[test]
    fn mistakes_in_the_file_are_named() {
        for (text, says) in [
            ("max_body_byte = 5\n", "max_body_byte"),
            ("query_timeout = \"soon\"\n", "soon"),
            ("query_timeout = \"0s\"\n", "positive"),
            ("listen = \"localhost\"\n", "listen"),
            ("retention_days = -1\n", "retention_days"),
            ("data = \n", "sightline.toml"),
        ] {
            let (_d, path) = file(text);
            let e = Settings::from_file(&path).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.contains("sightline.toml"), "{text:?}: {e}");
        }
        let e = Settings::default().server_config().unwrap_err().to_string();
        assert!(e.contains("--data"), "{e}");
        let zero = Settings {
            data: Some("d".into()),
            max_concurrent_queries: Some(0),
            ..Default::default()
        };
        assert!(zero
            .server_config()
            .unwrap_err()
            .to_string()
            .contains("max_concurrent_queries"));
        // Twenty digits are not enough: a province and a type code GB/T 28181 defines.
        for bad in [
            "3205080000200000000",
            "00000000001100000000",
            "32050800001100000001",
        ] {
            let s = Settings {
                data: Some("d".into()),
                viid_server_id: Some(bad.into()),
                ..Default::default()
            };
            let e = s.server_config().unwrap_err().to_string();
            assert!(
                e.contains("viid_server_id") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        let good = Settings {
            data: Some("d".into()),
            viid_server_id: Some("32050800002000000001".into()),
            ..Default::default()
        };
        assert!(good.server_config().is_ok());
        let missing = Settings::from_file(Path::new("/nonexistent/s.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/s.toml"), "{missing}");
    }
}
