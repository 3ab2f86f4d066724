//! Requests waiting for their answer, by id, and answers kept for retries. The HTTP side
//! registers before it produces the request (so that an answer can never arrive unclaimed); the
//! listener hands each answer to every caller waiting on that id; answers nobody waits for
//! (other gateways' requests, or ones that timed out) are dropped.
//!
//! A client that retries with the same id and the same body never makes the model run twice:
//! while the first call waits, the retry joins it; once answered, the answer is returned again
//! for `answer_ttl`. The same id with another body is a conflict.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How a request ended in the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The processor's result record (JSON).
    Result(serde_json::Value),
    /// The request went to the dead-letter topic.
    DeadLetter { kind: String, reason: String },
}

/// Most answers kept for retries; the oldest go first.
const KEPT_ANSWERS: usize = 10_000;

/// What registering a request found.
pub enum Registration<'a> {
    /// The first call with this id: produce the request, then wait.
    New(Waiting<'a>),
    /// A retry while the first call waits: wait with it, produce nothing.
    Joined(Waiting<'a>),
    /// A retry after the answer came: here it is again.
    Answered(Answer),
    /// The id is in use with another body.
    Conflict,
}

/// A fingerprint of a request body, to tell a retry from another request reusing an id.
pub fn fingerprint(body: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

struct Pending {
    fingerprint: u64,
    callers: Vec<(u64, oneshot::Sender<Answer>)>,
}

#[derive(Default)]
struct Table {
    pending: HashMap<String, Pending>,
    answered: HashMap<String, (u64, Answer, Instant)>,
    /// Answered ids, oldest first (for the size bound).
    order: VecDeque<String>,
}

/// The waiters of one gateway process.
pub struct Waiters {
    table: Mutex<Table>,
    registrations: AtomicU64,
    answer_ttl: Duration,
}

impl Default for Waiters {
    fn default() -> Self {
        Waiters::new(Duration::from_secs(300))
    }
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters").field("waiting", &self.len()).finish()
    }
}

/// A registered caller: removed from the table when dropped (answered, timed out or gone).
pub struct Waiting<'a> {
    waiters: &'a Waiters,
    id: String,
    registration: u64,
    pub answer: oneshot::Receiver<Answer>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Only its own entry: once answered, the id may already belong to a newer request.
        let mut table = self.waiters.lock();
        if let Some(pending) = table.pending.get_mut(&self.id) {
            pending.callers.retain(|(registration, _)| *registration != self.registration);
            if pending.callers.is_empty() {
                table.pending.remove(&self.id);
            }
        }
    }
}

impl Waiters {
    /// Answers are returned to retries for `answer_ttl`.
    pub fn new(answer_ttl: Duration) -> Self {
        Waiters { table: Mutex::default(), registrations: AtomicU64::new(0), answer_ttl }
    }

    /// Registers a call for `id` whose body has `fingerprint`.
    pub fn register(&self, id: &str, fingerprint: u64) -> Registration<'_> {
        let mut table = self.lock();
        if let Some((kept, answer, at)) = table.answered.get(id) {
            if at.elapsed() < self.answer_ttl {
                return if *kept == fingerprint {
                    Registration::Answered(answer.clone())
                } else {
                    Registration::Conflict
                };
            }
        }
        let (sender, answer) = oneshot::channel();
        let registration = self.registrations.fetch_add(1, Ordering::Relaxed);
        // A `Waiting` is made only after the table is unlocked: dropping one locks it.
        let joined = match table.pending.get_mut(id) {
            Some(pending) if pending.callers.iter().any(|(_, s)| !s.is_closed()) => {
                if pending.fingerprint != fingerprint {
                    return Registration::Conflict;
                }
                pending.callers.push((registration, sender));
                true
            }
            _ => {
                table.pending.insert(id.to_string(), Pending { fingerprint, callers: vec![(registration, sender)] });
                false
            }
        };
        drop(table);
        let waiting = Waiting { waiters: self, id: id.to_string(), registration, answer };
        if joined {
            Registration::Joined(waiting)
        } else {
            Registration::New(waiting)
        }
    }

    /// Hands `answer` to every caller waiting for `id` and keeps it for retries; false when
    /// nobody here waits for it.
    pub fn deliver(&self, id: &str, answer: Answer) -> bool {
        let mut table = self.lock();
        let Some(pending) = table.pending.remove(id) else { return false };
        let mut delivered = false;
        for (_, sender) in pending.callers {
            delivered |= sender.send(answer.clone()).is_ok();
        }
        table.answered.insert(id.to_string(), (pending.fingerprint, answer, Instant::now()));
        table.order.push_back(id.to_string());
        let ttl = self.answer_ttl;
        while table.order.len() > KEPT_ANSWERS
            || table
                .order
                .front()
                .is_some_and(|old| table.answered.get(old).is_none_or(|(_, _, at)| at.elapsed() >= ttl))
        {
            if let Some(old) = table.order.pop_front() {
                table.answered.remove(&old);
            }
        }
        delivered
    }

    /// Ids waiting now.
    pub fn len(&self) -> usize {
        self.lock().pending.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock cannot leave the table inconsistent (single operations).
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(registration: Registration<'_>) -> Waiting<'_> {
        match registration {
            Registration::New(waiting) => waiting,
            _ => panic!("expected a new registration"),
        }
    }

    fn result(n: u64) -> Answer {
        Answer::Result(serde_json::json!({ "n": n }))
    }

    #[test]
    fn an_answer_reaches_its_waiter_once() {
        let waiters = Waiters::default();
        let mut waiting = new(waiters.register("a", 1));
        assert!(waiters.deliver("a", result(1)));
        assert_eq!(waiting.answer.try_recv().unwrap(), result(1));
        assert!(!waiters.deliver("a", result(2)), "a second answer has nobody to go to");
    }

    #[test]
    fn answers_for_others_are_dropped() {
        let waiters = Waiters::default();
        let _waiting = new(waiters.register("mine", 1));
        assert!(!waiters.deliver("someone-else", result(1)));
        assert_eq!(waiters.len(), 1);
    }

    #[test]
    fn a_retry_joins_the_waiting_call_and_gets_the_same_answer() {
        let waiters = Waiters::default();
        let mut first = new(waiters.register("x", 7));
        let Registration::Joined(mut retry) = waiters.register("x", 7) else { panic!("the retry joins") };
        assert!(waiters.deliver("x", result(1)));
        assert_eq!(first.answer.try_recv().unwrap(), result(1));
        assert_eq!(retry.answer.try_recv().unwrap(), result(1));
    }

    #[test]
    fn a_retry_after_the_answer_gets_it_again_within_the_ttl() {
        let waiters = Waiters::new(Duration::from_millis(200));
        let first = new(waiters.register("x", 7));
        waiters.deliver("x", result(1));
        drop(first);
        assert!(matches!(waiters.register("x", 7), Registration::Answered(a) if a == result(1)));
        assert!(matches!(waiters.register("x", 8), Registration::Conflict), "same id, other body");
        std::thread::sleep(Duration::from_millis(250));
        assert!(matches!(waiters.register("x", 8), Registration::New(_)), "after the TTL the id is free");
    }

    #[test]
    fn the_same_id_with_another_body_is_a_conflict_while_waiting() {
        let waiters = Waiters::default();
        let _first = new(waiters.register("x", 7));
        assert!(matches!(waiters.register("x", 8), Registration::Conflict));
    }

    #[test]
    fn an_answered_waiter_dropped_late_leaves_a_newer_one_with_its_id_alone() {
        let waiters = Waiters::new(Duration::ZERO);
        let first = new(waiters.register("x", 1));
        assert!(waiters.deliver("x", result(1)));
        // A new request with the same id registers before the first handler has finished.
        let mut later = new(waiters.register("x", 2));
        drop(first);
        assert!(waiters.deliver("x", result(2)), "the later request still waits");
        assert_eq!(later.answer.try_recv().unwrap(), result(2));
    }

    #[test]
    fn a_caller_that_gives_up_leaves_the_table() {
        let waiters = Waiters::default();
        let first = new(waiters.register("x", 1));
        drop(first);
        assert!(waiters.is_empty(), "a dropped waiter (timeout, client gone) leaves the table");
        assert!(matches!(waiters.register("x", 2), Registration::New(_)));
    }
}
