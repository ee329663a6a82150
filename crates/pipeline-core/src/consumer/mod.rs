//! The consumer runtime every worker is built on.
//!
//! A [`Worker`] connects, declares (or checks) the topology, consumes one work queue with a
//! configurable prefetch and runs up to `concurrency` handlers at once. For each delivery the
//! [`Processor`] decodes the body, calls the [`Handler`], publishes its outputs with confirms and
//! only then acks the input. Failures are typed: a transient one goes to the next delay queue of
//! the retry ladder (and comes back to the work queue when its TTL expires), a permanent one — or a
//! transient one past the last step — is wrapped in the dead-letter envelope
//! (docs/ARCHITECTURE.md), published to `dead_letter_exchange`, and only then acked. If even that
//! publish fails the delivery is returned to the queue, so nothing is ever dropped.
//!
//! Connection loss ends the session; the worker reconnects with backoff and jitter, re-declares
//! and resumes. On shutdown it stops consuming, lets in-flight handlers finish within the drain
//! deadline and closes the connection, so whatever did not finish is redelivered.
//!
//! A worker that may not declare (`topology.declare = false`, running as its role's broker user)
//! checks passively only what it uses ([`UsedTopology`]): its own queue and the exchanges it
//! publishes to. Checking the whole topology would need a permission on every queue and
//! exchange from RabbitMQ 4.2.6 on, which a least-privilege role does not have.

//!
//! Split by role: [`processor`] handles one delivery (the single step tests call), [`worker`]
//! is the reconnecting consume loop around it, [`roles`] says what each binary uses of the
//! topology.

pub mod processor;
pub mod roles;
pub mod worker;

pub use processor::{DeliveryMeta, Disposition, Handler, Processor};
pub use roles::{BINARIES, Binary, MAIL_STAGES, UsedTopology, binary, binary_names, used_by};
pub use worker::{ServeError, Worker, WorkerError, serve_worker, serve_worker_with};
