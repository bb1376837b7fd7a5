//! Real time, pure: what happens to an event once it is committed, decided without IO.
//!
//! - [`rules`]: alert rules (threshold and baseline), their wire shape and the shipped defaults;
//! - [`window`]: the sliding windows that evaluate rules over a tenant's committed events;
//! - [`webhook`]: Standard Webhooks signatures and secrets;
//! - [`hec`], [`syslog`], [`ocsf`]: the wire formats of SIEM forwarding.
//!
//! *Invariant: no IO, no clock.* The server feeds committed events in `seq` order and carries
//! out what these modules decide (append an alert, deliver a message).

pub mod hec;
pub mod ocsf;
pub mod rules;
pub mod syslog;
pub mod webhook;
pub mod window;
