//! Requests waiting for their answer, by id. The HTTP side registers a waiter before it produces
//! the request (so that an answer can never arrive unclaimed); the listener hands each answer
//! to its waiter, and answers nobody waits for (other gateways' requests, or ones that timed
//! out) are dropped.

use std::collections::HashMap;
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
    pending: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
}

/// A registered waiter: removed from the table when dropped (answered, timed out or cancelled).
pub struct Waiting<'a> {
    waiters: &'a Waiters,
    id: String,
    pub answer: oneshot::Receiver<Answer>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.id);
    }
}

impl Waiters {
    /// Registers `id`; `None` when a request with that id is already waiting here.
    pub fn register(&self, id: &str) -> Option<Waiting<'_>> {
        let mut pending = self.lock();
        if pending.get(id).is_some_and(|sender| !sender.is_closed()) {
            return None;
        }
        let (sender, answer) = oneshot::channel();
        pending.insert(id.to_string(), sender);
        Some(Waiting { waiters: self, id: id.to_string(), answer })
    }

    /// Hands `answer` to the waiter of `id`; false when nobody here waits for it.
    pub fn deliver(&self, id: &str, answer: Answer) -> bool {
        match self.lock().remove(id) {
            Some(sender) => sender.send(answer).is_ok(),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Answer>>> {
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
    fn the_same_id_cannot_wait_twice_but_can_after_the_first_ends() {
        let waiters = Waiters::default();
        let first = waiters.register("x").unwrap();
        assert!(waiters.register("x").is_none());
        drop(first);
        assert!(waiters.is_empty(), "a dropped waiter (timeout, client gone) leaves the table");
        assert!(waiters.register("x").is_some());
    }
}
