//! warden-chaos: drives a node from outside like a user would — fault injectors and the
//! timing harness that measures time-to-restore against warden and its peers.
//!
//! - [`bench`]: `warden chaos bench`, warden vs the peer supervisors (Monit, supervisord)
//!   in one run
//! - [`restore`]: inject a fault into the process holding a port, time the first new `200`
//! - [`monit`], [`supervisord`]: the peers' config files and binaries
//! - [`probe_cost`]: `warden chaos probes`, warden's CPU and RSS probing six layers at 1 Hz
//! - [`services`]: the demo node's services and ports, started by hand
//! - [`link`]: a db behind a real link (network namespace, veth) for mode 6
//! - [`harm`]: harmful actions of a repair, counted from outside
//! - [`modes`]: `warden chaos modes`, MTTR per failure mode on a node the harness starts
//! - [`soak`]: `warden chaos soak`, many seeded faults in a row, each accounted for
//! - [`procs`]: owned process groups, orphan reaping, `/proc` readings (RSS, CPU)
//! - [`stats`], [`report`]: HDR summaries, the JSON document and the markdown section
//! - [`procnet`]: who holds a port, from `/proc/net/tcp*` (re-exported from `warden-core`)

pub mod alert_sink;
pub mod bench;
pub mod cli;
pub mod error;
pub mod harm;
pub mod helper;
pub mod inject;
pub mod link;
pub mod modes;
pub mod monit;
pub mod probe_cost;
pub use warden_core::procnet;
pub mod procs;
pub mod reliability;
pub mod report;
pub mod restore;
pub mod services;
pub mod soak;
pub mod soak_peer;
pub mod soak_plot;
pub mod soak_watch;
pub mod stats;
pub mod supervisord;
pub mod trace_cost;
