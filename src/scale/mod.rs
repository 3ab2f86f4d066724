//! The companion scaler (`tidal scale`): observes the processor's consumer group (lag, ingest and
//! processing rates, members, partitions), decides a replica count with optional policies (lag,
//! rate, ladder, predictive, schedule, manual override) and damping, and can replay a traffic
//! trace through the same decisions (`tidal scale simulate`) to tune them before production.

pub mod actuator;
pub mod config;
pub mod damping;
pub mod decide;
pub mod manual;
pub mod notify;
pub mod observe;
pub mod policy;
pub mod run;
pub mod signals;
pub mod simulate;

pub use config::ScaleConfig;
pub use decide::{Decision, PolicyConfig, Scaler};
pub use policy::Observation;
