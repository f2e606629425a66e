//! A Sightline cluster (issue 22, first half): the log is NATS JetStream, sealed
//! segments live on an S3 API, leases, checkpoints and the segment catalog live in
//! PostgreSQL. No consensus or replication of our own: each engine does its part.
//!
//! * [`partition`]: community → partition (FNV-1a 64 mod P), subjects, cluster event ids.
//! * [`payload`]: an event as a log message, and its message id (dedup on re-send).
//! * [`log`]: JetStream: the stream, the publisher of the ingest role.
//! * [`meta`]: PostgreSQL: the schema, leases with epochs, the fenced commit, the catalog.
//! * [`gat1400`]: the GA/T 1400 gateway's credentials and registrations in
//!   PostgreSQL, its pictures' keys on object storage.
//! * [`keys`]: the cluster's API keys in PostgreSQL (`api_keys`), shared by every node.
//! * [`catalog`]: the cluster's communities and devices in PostgreSQL, as `serve`'s
//!   store catalog holds them.
//! * [`objects`]: S3 through `object_store`: create-only puts, reads, listing.
//! * [`indexer`]: the index role: leases → local stores → sealed, uploaded, committed.
//! * [`restore`]: a partition's store rebuilt from the catalog and object storage.
//! * [`janitor`]: uploaded objects no commit names, removed after an age.
//! * [`replica`]: read replicas on query nodes: partitions placed by rendezvous
//!   hashing, restored and fed from the log as an indexer's, never committed.
//! * [`serving`]: the partitions an indexer (or a query node's replicas) holds, answering query nodes' requests
//!   (`sightline_query::federated`), and the requests' wire encoding.
//!
//! * [`subscriptions`]: `serve`'s subscriptions in PostgreSQL, each delivered by the
//!   one query node holding its lease (an epoch fences a replaced holder's cursor).
//!
//! HTTP is not here: the ingest role's `POST /v1/events`, the indexer's partition
//! listener and the query role are in `sightline-server` (feature `cluster`), which
//! calls [`log::Publisher`] and [`serving::Held`].

pub mod alerts;
pub mod catalog;
pub mod config;
pub mod directory;
pub mod error;
pub mod gat1400;
pub mod indexer;
pub mod janitor;
pub mod keys;
pub mod log;
pub mod meta;
pub mod objects;
pub mod partition;
pub mod payload;
pub mod replica;
pub mod restore;
pub mod retention;
pub mod serving;
pub mod subscriptions;
pub mod tls;
pub mod upstreams;
pub mod watchlists;

pub use config::ClusterConfig;
pub use error::{ClusterError, Result};
