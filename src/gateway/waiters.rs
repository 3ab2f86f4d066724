//! Requests waiting for their answer, by id. The HTTP side registers a waiter before it produces
//! the request (so that an answer can never arrive unclaimed); the listener hands each answer
//! to its waiter, and answers nobody waits for (other gateways' requests, or ones that timed
//! out) are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

/// How a request ended in the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The processor's result record (JSON).
    Result(serde_json::Value),
    /// The request went to the dead-letter topic.
    DeadLetter { kind: String, reason: String },
}

/// The waiters of one gateway process.
#[derive(Debug, Default)]
pub struct Waiters {
    /// By id: the waiter's registration number and its channel.
    pending: Mutex<HashMap<String, (u64, oneshot::Sender<Answer>)>>,
    registrations: AtomicU64,
}

/// A registered waiter: removed from the table when dropped (answered, timed out or cancelled).
pub struct Waiting<'a> {
    waiters: &'a Waiters,
    id: String,
    registration: u64,
    pub answer: oneshot::Receiver<Answer>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Only its own entry: once answered, the id may already belong to a newer request.
        let mut pending = self.waiters.lock();
        if pending.get(&self.id).is_some_and(|(registration, _)| *registration == self.registration) {
            pending.remove(&self.id);
        }
    }
}

impl Waiters {
    /// Registers `id`; `None` when a request with that id is already waiting here.
    pub fn register(&self, id: &str) -> Option<Waiting<'_>> {
        let mut pending = self.lock();
        if pending.get(id).is_some_and(|(_, sender)| !sender.is_closed()) {
            return None;
        }
        let (sender, answer) = oneshot::channel();
        let registration = self.registrations.fetch_add(1, Ordering::Relaxed);
        pending.insert(id.to_string(), (registration, sender));
        Some(Waiting { waiters: self, id: id.to_string(), registration, answer })
    }

    /// Hands `answer` to the waiter of `id`; false when nobody here waits for it.
    pub fn deliver(&self, id: &str, answer: Answer) -> bool {
        match self.lock().remove(id) {
            Some((_, sender)) => sender.send(answer).is_ok(),
            None => false,
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, oneshot::Sender<Answer>)>> {
        // A panic while holding this lock cannot leave the map inconsistent (single operations).
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reaches_its_waiter_once() {
        let waiters = Waiters::default();
        let mut waiting = waiters.register("a").unwrap();
        assert!(waiters.deliver("a", Answer::Result(serde_json::json!({"id": "a"}))));
        assert_eq!(waiting.answer.try_recv().unwrap(), Answer::Result(serde_json::json!({"id": "a"})));
        assert!(!waiters.deliver("a", Answer::Result(serde_json::json!({}))), "a second answer has nobody to go to");
    }

    #[test]
    fn answers_for_others_are_dropped() {
        let waiters = Waiters::default();
        let _waiting = waiters.register("mine").unwrap();
        assert!(!waiters.deliver("someone-else", Answer::Result(serde_json::json!({}))));
        assert_eq!(waiters.len(), 1);
    }

    #[test]
    fn an_answered_waiter_dropped_late_leaves_a_newer_one_with_its_id_alone() {
        let waiters = Waiters::default();
        let first = waiters.register("x").unwrap();
        assert!(waiters.deliver("x", Answer::Result(serde_json::json!({"n": 1}))));
        // A retry with the same id registers before the first request's handler has finished.
        let mut retry = waiters.register("x").expect("the first was answered: the id is free");
        drop(first);
        assert!(waiters.deliver("x", Answer::Result(serde_json::json!({"n": 2}))), "the retry still waits");
        assert_eq!(retry.answer.try_recv().unwrap(), Answer::Result(serde_json::json!({"n": 2})));
    }

    #[test]
    fn the_same_id_cannot_wait_twice_but_can_after_the_first_ends() {
        let waiters = Waiters::default();
        let first = waiters.register("x").unwrap();
        assert!(waiters.register("x").is_none());
        drop(first);
        assert!(waiters.is_empty(), "a dropped waiter (timeout, client gone) leaves the table");
        assert!(waiters.register("x").is_some());
    }
}
