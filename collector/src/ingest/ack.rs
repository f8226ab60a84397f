//! Acknowledgements for one connection. Each read's frames go to the pipeline as one batch with
//! an [`Ack`]; batches become durable in any order (several workers), but the peer is only told
//! about an unbroken prefix: "the first N event frames of this connection are durable".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The acknowledgement state of one connection.
#[derive(Debug, Default)]
pub struct AckTracker {
    state: Mutex<State>,
    /// Woken whenever the acknowledged count grows.
    pub changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Index of `pending[0]` among the batches issued on this connection.
    base: u64,
    /// Per batch in issue order: the frame count it ends at, and whether it is durable.
    pending: VecDeque<(u64, bool)>,
    acked: u64,
}

/// A batch's claim on an acknowledgement: completing it says the batch's events are durable
/// (or were dropped on purpose: malformed, sampled out). Dropping it uncompleted holds the
/// connection's acknowledgements at that batch, so the peer resends from there.
#[derive(Debug)]
pub struct Ack {
    tracker: Arc<AckTracker>,
    index: u64,
}

impl AckTracker {
    /// Registers the next batch, which ends at event frame `end` of the connection.
    pub fn issue(self: &Arc<Self>, end: u64) -> Ack {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let index = st.base + st.pending.len() as u64;
        st.pending.push_back((end, false));
        Ack { tracker: self.clone(), index }
    }

    /// Event frames acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).acked
    }

    /// True when every batch issued is acknowledged.
    pub fn settled(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).pending.is_empty()
    }
}

impl Ack {
    pub fn complete(self) {
        let t = &self.tracker;
        let mut st = t.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = self.index.checked_sub(st.base).and_then(|i| st.pending.get_mut(i as usize)) else { return };
        slot.1 = true;
        let before = st.acked;
        while let Some(&(end, true)) = st.pending.front() {
            st.acked = end;
            st.pending.pop_front();
            st.base += 1;
        }
        if st.acked != before {
            drop(st);
            t.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unbroken_prefix_is_acknowledged() {
        let t = Arc::new(AckTracker::default());
        let a = t.issue(3);
        let b = t.issue(5);
        let c = t.issue(9);
        c.complete();
        assert_eq!(t.acked(), 0, "the third batch alone acknowledges nothing");
        a.complete();
        assert_eq!(t.acked(), 3);
        b.complete();
        assert_eq!(t.acked(), 9, "the second closes the gap");
        assert!(t.settled());
    }

    #[test]
    fn a_batch_never_completed_holds_everything_after_it() {
        let t = Arc::new(AckTracker::default());
        let a = t.issue(2);
        let lost = t.issue(4);
        let c = t.issue(6);
        a.complete();
        drop(lost);
        c.complete();
        assert_eq!(t.acked(), 2);
        assert!(!t.settled());
    }
}
