//! warden-core: the domain of warden and its pure logic.
//!
//! Everything here is plain types and functions — no actors, no HTTP, no store — so every
//! rule (config validation, restart intensity, policy decisions, the audit hash chain,
//! MTTR math, playbook planning) is testable on its own and shared by every other crate.
//!
//! - [`config`]: the node config schema, loading with file:line:column errors, validation.
//! - [`restart`]: service restart backoff and crash-loop quarantine.
//! - [`policy`]: governance policies, tiers, whitelist, rate limits → decisions.
//! - [`permit`]: the permit that tier ≥ 2 steps cannot run without.
//! - [`audit`]: audit entries and the SHA-256 hash chain.
//! - [`incident`]: failure modes, incidents and MTTR math.
//! - [`playbook`]: the playbook catalog and step planning.
//! - [`procnet`]: who holds a port, from `/proc/net/tcp*`.

pub mod audit;
pub mod config;
pub mod incident;
pub mod permit;
pub mod playbook;
pub mod policy;
pub mod procnet;
pub mod restart;
pub mod yaml;

/// Milliseconds since the Unix epoch from the wall clock. Used for stored timestamps only;
/// all timing logic uses tokio's monotonic clock.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
