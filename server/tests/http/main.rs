//! The real server on 127.0.0.1 with an ephemeral port, spoken to over HTTP/1.1: one
//! test binary, a module per area; the helpers they share are in `support`.

mod support;

mod audit_log;
mod auth_audit;
mod cascade;
mod cascade_conformance;
mod cascade_interop;
mod cascade_processes;
mod cascade_security;
mod catalog;
mod cli;
mod conformance;
mod console;
mod faults;
mod feed;
mod gat1400;
mod gat1400_query;
mod hostile;
mod ingest;
mod keys;
mod limits;
mod memory_budget;
mod metrics;
mod negotiation;
mod openapi;
mod queries;
mod retention;
mod server_timing;
mod standards;
mod subscriptions;
mod tls;
mod watchlists;
