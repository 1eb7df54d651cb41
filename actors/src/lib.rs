//! warden-actors: the supervision trees, their actors, and the fjall store behind them.
//!
//! The node is a tree of ractor actors under OTP-style supervisors (ractor-supervisor):
//! governance (audit writer → gatekeeper → approval queue, rest_for_one), guardian (service
//! supervisor, probes, playbook executor) and healing (detectors, incident manager). Actors
//! are thin: each holds config in `self`, state built in `pre_start`, and one message enum;
//! the rules they apply live in `warden-core`. State that must outlive an actor restart (the
//! running processes, the store, status snapshots) lives in [`context::NodeContext`].

pub mod approval_queue;
pub mod audit_writer;
pub mod context;
pub mod detector;
pub mod executor;
pub mod gatekeeper;
pub mod incident_manager;
pub mod metrics;
pub mod probe;
pub mod probe_board;
pub mod process;
pub mod registry;
pub mod rpc;
pub mod service_supervisor;
pub mod service_table;
pub mod store;
pub mod tree;
