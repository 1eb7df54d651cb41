//! warden-actors: the supervision trees, their actors, and the store behind them.
//!
//! The layout follows the runtime tree, so an actor is found where the tree puts it:
//!
//! - [`governance`]: audit writer → gatekeeper → approval queue (rest_for_one)
//! - [`guardian`]: service supervisor, probes, playbook executor (one_for_one)
//! - [`healing`]: detectors, incident manager (one_for_one)
//!
//! beside the shared machinery: [`node`] (making a node and wiring it: who gets which handle), [`addr`]
//! (typed actor addresses), [`tree`] (supervisors with strategies and intensities),
//! [`store`] and [`data_dir`] (durable records and their files), `reconfigure` (the
//! files' config with the runtime overrides playbooks set), [`process`] (child
//! processes, logs, signals), [`metrics`] and [`registry`] (what the API reads),
//! [`incident_trace`] (the trace of each incident, which healing and the executor extend) and
//! [`fault`] (test-only crash injection).
//!
//! Actors are thin: each holds its handles in `self`, state built in `pre_start`, and one
//! message enum; the rules they apply live in `warden-core`. State that must outlive an
//! actor restart (running processes, probe results, the store) lives outside the actors.

pub mod addr;
pub mod current;
pub mod data_dir;
pub mod fault;
pub mod governance;
pub mod guardian;
pub mod healing;
pub mod holds;
pub mod incident_trace;
pub mod metrics;
pub mod node;
pub mod private_file;
pub mod process;
mod reconfigure;
pub mod registry;
pub mod store;
pub mod tree;
mod wiring;
