//! Request plumbing every handler shares, and that imports no handler: the [`Call`] a
//! handler receives, response bodies, reading request bodies, the runner that puts
//! store work on the blocking pool within the server's slots and time limit (and the
//! audited variant for investigative queries), the JSON shapes of events, JSON
//! body helpers, and outbound connections (`client`: TCP or TLS by URL scheme).

pub(crate) mod body;
pub(crate) mod call;
pub(crate) mod client;
pub(crate) mod conditional;
pub mod egress;
pub(crate) mod json;
pub(crate) mod limits;
pub(crate) mod negotiate;
pub(crate) mod offer;
pub(crate) mod out;
pub(crate) mod parse_errors;
pub(crate) mod runner;

pub(crate) use body::{Body, Reply};
pub(crate) use call::{Answer, Call};
