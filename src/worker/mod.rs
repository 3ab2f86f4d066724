//! The processor: a pool of pinned worker threads, each running one consume → infer → produce →
//! commit loop with its own consumer, transactional producer and model sessions.
//!
//! Exactly-once rests on four rules kept by this module:
//! 1. a worker polls only between transactions, so rebalance callbacks never interrupt one;
//! 2. results, dead letters and the next offsets of the transaction's batches commit in one
//!    transaction (one batch, or several while a light model keeps up: `gather`);
//! 3. an aborted transaction rewinds the consumer to its first offsets and redoes it;
//! 4. a half-gathered transaction is dropped and rewound when a rebalance moves partitions.
//!
//! Priority lanes (`lanes`) only pause and resume partitions between batches, after a commit;
//! they never move an offset.

mod batch;
mod clients;
mod commit;
mod gather;
mod lanes;
mod outage;
mod pool;
mod process;
mod refusals;
mod rewind;
mod run;
mod watchdog;

pub use pool::{check_local, start, Processor};
