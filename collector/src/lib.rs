//! The Hygiene collector: the one central service every agent streams to, and the admin
//! service `hygienectl` (its own crate, which speaks only the protocol) calls.
//!
//! Data flows agent → [`server`] (mTLS gRPC, identity from the certificate via [`identity`]) →
//! [`store`] (SQLite by default, or PostgreSQL) → [`services`] (the use cases) → admin service →
//! `hygienectl`. Generated protocol types stop at the server's edge (and at [`agents`], the
//! orders agents read); services and the store work on [`model`] types.
//!
//! - [`pki`]: the built-in certificate authority (`hygiene-collector pki ...`).
//! - [`config`]: the collector's TOML configuration.
//! - [`intel`]: botnet IP lists, and rule and IOC bundles for the agents.
//! - [`vuln`]: Microsoft's monthly security update documents and the updates each host lacks.

pub mod agents;
pub mod allowlist;
pub mod certs;
pub mod config;
pub mod enroll;
pub mod findings;
pub mod identity;
pub mod intel;
pub mod limits;
pub mod listdiff;
pub mod model;
pub mod pki;
pub mod priority;
pub mod refusals;
pub mod server;
pub mod services;
pub mod site;
pub mod store;
pub mod sweep;
pub mod version;
pub mod vuln;

pub use server::{ServeOptions, serve, serve_with, tls_from_pki};
