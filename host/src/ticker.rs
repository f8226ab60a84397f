//! The epoch ticker: advances the engine's epoch every [`TICK`] while filter code may be running,
//! so a call's deadline can fire, and sleeps otherwise. Waking a thread 1,000 times a second
//! cost the reference proxy ~1.1 µs of CPU per request at 18k requests/s; now it wakes only
//! around the filter threads' batches and reloads.

use crate::deadline::TICK;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};

/// The running ticker; [`Ticker::running`] keeps it ticking for as long as its guard lives.
pub(crate) struct Ticker {
    state: Arc<State>,
    thread: Thread,
}

struct State {
    /// Guards alive: filter code may be running.
    busy: AtomicUsize,
    /// The ticker is about to park or parked; whoever makes it busy must wake it.
    parked: AtomicBool,
    stop: AtomicBool,
}

/// While it lives, the epoch advances every tick.
pub(crate) struct Running<'a>(&'a Ticker);

impl Ticker {
    /// Starts the thread; `tick` advances the epoch (`Engine::increment_epoch`).
    pub fn start(tick: impl Fn() + Send + 'static) -> std::io::Result<(Ticker, JoinHandle<()>)> {
        let state = Arc::new(State { busy: AtomicUsize::new(0), parked: AtomicBool::new(false), stop: AtomicBool::new(false) });
        let s = state.clone();
        let handle = std::thread::Builder::new().name("telemetry-epoch".into()).spawn(move || {
            while !s.stop.load(SeqCst) {
                // Announce the park before checking for work; `running` sets busy before
                // checking for a park. One of the two always sees the other (both SeqCst), and an
                // unpark that comes first makes the park return at once.
                s.parked.store(true, SeqCst);
                if s.busy.load(SeqCst) == 0 && !s.stop.load(SeqCst) {
                    std::thread::park();
                }
                s.parked.store(false, SeqCst);
                std::thread::sleep(TICK);
                tick();
            }
        })?;
        let thread = handle.thread().clone();
        Ok((Ticker { state, thread }, handle))
    }

    /// Keeps the epoch advancing until the guard is dropped: take one before running filter code.
    #[inline]
    pub fn running(&self) -> Running<'_> {
        self.state.busy.fetch_add(1, SeqCst);
        if self.state.parked.load(SeqCst) {
            self.thread.unpark();
        }
        Running(self)
    }

    /// Ends the thread (the caller joins it).
    pub fn stop(&self) {
        self.state.stop.store(true, SeqCst);
        self.thread.unpark();
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.state.busy.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(what: impl Fn() -> bool) -> bool {
        let t = Instant::now();
        while !what() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        what()
    }

    #[test]
    fn the_epoch_advances_while_a_guard_lives_and_not_after() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let (ticker, handle) = Ticker::start(move || {
            t.fetch_add(1, SeqCst);
        })
        .expect("ticker");
        assert!(wait_for(|| ticker.state.parked.load(SeqCst)), "an idle ticker parks");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(ticks.load(SeqCst), 0, "no ticks while idle");
        {
            let _running = ticker.running();
            assert!(wait_for(|| ticks.load(SeqCst) >= 5), "ticks while running: {}", ticks.load(SeqCst));
        }
        assert!(wait_for(|| ticker.state.parked.load(SeqCst)), "parks again once idle");
        let after = ticks.load(SeqCst);
        std::thread::sleep(Duration::from_millis(30));
        assert!(ticks.load(SeqCst) <= after + 1, "idle again: {} -> {}", after, ticks.load(SeqCst));
        ticker.stop();
        handle.join().expect("ticker thread");
    }
}
