//! warden-core: the domain of warden and its pure logic.
//!
//! Everything here is plain types and functions — no actors, no HTTP, no store — so every
//! rule is testable on its own and shared by every other crate.
//!
//! - [`source`]: config documents, positions, every problem of a file at once.
//! - [`config`]: the node config, parsed into validated types (durations, addresses, URLs,
//!   service names, resolved executables).
//! - [`service`]: the states of a supervised service.
//! - [`restart`]: service restart backoff and crash-loop quarantine.
//! - [`probe`]: check results, failures and the threshold tracker.
//! - [`probe_history`]: a probe's recent checks and latency percentiles.
//! - [`alert`]: alerts, flap damping, Alertmanager's webhook payload.
//! - [`mode`], [`detect`]: the ten failure modes and the rules that recognise them.
//! - [`diagnose`]: the cause behind a finding and the playbook order that repairs it.
//! - [`harm`]: first, do no harm: whether a step may act on a service, on fresh evidence.
//! - [`verify`]: when a repaired service counts as restored (its stability window).
//! - [`holds`]: pauses, maintenance, operators at work, the node's circuit breaker, the
//!   repair budget.
//! - [`fit`]: what a playbook needs from a service, and where it does not apply.
//! - [`quarantine`]: when a quarantined service is tried again by itself.
//! - [`slo`]: service level objectives, error budgets, multiwindow burn rates.
//! - [`incident`]: the incident lifecycle (next playbook, resolve, escalate) and MTTR math.
//! - [`overrides`]: what playbooks changed in the config (ports, upstreams, deadlines).
//! - [`playbook`], [`run`]: the playbook catalog, step planning, run records.
//! - [`tier`]: autonomy tiers 1–4.
//! - [`approval`]: approval requests: votes, two approvers, expiry, one use.
//! - [`policy`]: governance policies, tiers, whitelist, rate limits → decisions, audit records.
//! - [`permit`]: the permit that tier ≥ 2 steps cannot run without.
//! - [`audit`]: audit entries, the SHA-256 hash chain, seals and checkpoints.
//! - [`auth`]: API tokens (stored as hashes) and roles.
//! - [`procnet`]: who holds a port, how many connections it has (sock_diag).
//! - [`netlink`]: netlink dumps: default gateways, neighbour (ARP/NDP) entries.
//! - [`signal`]: signals by name.
//! - [`time`]: wall-clock timestamps (Unix ms, RFC 3339).

pub mod alert;
pub mod approval;
pub mod audit;
pub mod auth;
pub mod config;
pub mod detect;
pub mod diagnose;
pub mod fit;
pub mod harm;
pub mod holds;
pub mod incident;
pub mod logcause;
pub mod mode;
pub mod netlink;
pub mod overrides;
pub mod permit;
pub mod playbook;
pub mod policy;
pub mod probe;
pub mod probe_history;
pub mod procnet;
pub mod quarantine;
pub mod restart;
pub mod run;
pub mod service;
pub mod signal;
pub mod slo;
pub mod source;
pub mod tier;
pub mod time;
pub mod verify;
