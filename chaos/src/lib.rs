//! warden-chaos: drives a node from outside like a user would — fault injectors and the
//! timing harness that measures time-to-restore against warden and its peers.

pub mod cli;
