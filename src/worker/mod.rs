//! The processor: a pool of pinned worker threads, each running one consume → infer → produce →
//! commit loop with its own consumer, transactional producer and model sessions.
//!
//! Exactly-once rests on four rules kept by this module:
//! 1. a worker polls only between transactions, so rebalance callbacks never interrupt one;
//! 2. results, dead letters and the batch's next offsets commit in one transaction;
//! 3. an aborted transaction rewinds the consumer to the batch's first offsets and redoes it;
//! 4. a half-collected batch is dropped and rewound when a rebalance moves partitions.
//!
//! Priority lanes (`lanes`) only pause and resume partitions between batches, after a commit;
//! they never move an offset.

mod batch;
mod clients;
mod commit;
mod lanes;
mod outage;
mod pool;
mod process;
mod refusals;
mod rewind;
mod run;
mod watchdog;

pub use pool::{check_local, start, Processor};
