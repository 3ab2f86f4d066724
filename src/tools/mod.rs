//! Operator tools behind the CLI: clients that produce requests and read results, and checks of
//! model manifests (list, describe, verify on a sample).

mod clients;
mod model_check;

pub use clients::{consume, produce_images, produce_lines, ConsumeUntil, ProduceOptions};
pub use model_check::{describe, list, verify, ModelSummary, Verification};
