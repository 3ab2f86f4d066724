//! tidal: a Kafka-native ML inference stream processor.
//!
//! Clients produce prediction requests to `tidal.requests.<model>` and read results from
//! `tidal.results.<model>`; bad input goes to `tidal.dlq` with its reason. Results and input
//! offsets commit in one Kafka transaction, so `read_committed` readers see each result once.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | typed, layered configuration, validated once at start-up |
//! | [`codec`] | wire formats: request decoding, result encoding, dead-letter headers (pure) |
//! | [`models`] | one trait for "a batch in, results out"; model kinds; ONNX Runtime set-up |
//! | [`kafka`] | client options, consumer context, topic administration, transactional error classes |
//! | [`worker`] | pinned worker threads, each running consume → infer → produce → commit |
//! | [`metrics`] | metric names and the Prometheus exporter |
//! | [`gateway`] | `tidal gateway`: HTTP request-reply over the topics for synchronous callers |
//! | [`tools`] | `tidal produce` / `tidal consume`: small clients for demos and operators |
//! | [`vision`] | image decoding, resizing, warping and geometry for the image models (pure) |
//! | [`security`] | TLS/SASL settings, secrets from the environment or files |
//! | [`secret`] | a secret type that never prints itself; scrubbing secrets out of printed text |
//! | [`install`] | pinned versions and install folders, from the file the set-up scripts read |
//! | [`health`] | `/livez` and `/readyz`: what a process knows about its own health |
//! | [`shutdown`] | one shutdown signal (SIGINT/SIGTERM or code) for every long-running command |
//! | [`scale`] | the companion scaler: policies, damping, simulation |
//! | `chart` | the drawing primitives of bench.png and simulation.png |
//! | [`allocator`] | large buffers (decoded photos) returned to the operating system when freed |
//! | [`bench`] | `tidal bench`: the limit, tidal and the baselines a user would run instead, in one run |

pub mod allocator;
pub mod bench;
pub(crate) mod chart;
pub mod codec;
pub mod config;
pub mod error;
pub mod gateway;
pub mod health;
pub mod install;
pub mod kafka;
pub mod metrics;
pub mod models;
pub mod scale;
pub mod secret;
pub mod security;
pub mod shutdown;
pub mod tools;
pub mod vision;
pub mod worker;

pub use error::{Error, Result};
