//! A filter call's deadline counts the CPU time the call uses, not the time its thread waits for
//! a CPU. Epoch ticks measure wall-clock time; a proxy worker preempted mid-call on a busy machine
//! would otherwise be interrupted for the scheduler's doing and its request's event lost.
//!
//! The call itself pays nothing for this: the thread's CPU clock is read only once a deadline has
//! passed. From then on the call is checked every window (a quarter of the deadline): it is
//! interrupted as soon as it used at least half a window's CPU in one window (it is really
//! running, so a looping filter costs the deadline plus one window), and it gets another window
//! while its thread was mostly off the CPU, up to a hard wall-clock cap of four deadlines.

use std::time::Duration;
use wasmtime::UpdateDeadline;

/// Time between epoch ticks; deadlines and windows are counted in ticks.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// One instance's deadline state; reset at every call.
pub(crate) struct CallDeadline {
    /// Ticks of one check window (a quarter of the call deadline, at least one).
    window_ticks: u64,
    /// CPU time a window must use for the call to count as running.
    running_cpu: Duration,
    /// Most windows a call may be given: together three deadlines, so a call never holds its
    /// thread longer than four deadlines in all.
    max_windows: u32,
    /// Windows granted so far in this call, and this thread's CPU clock when the last began.
    windows: u32,
    window_start_cpu: Duration,
}

impl CallDeadline {
    pub fn new(deadline_ticks: u64) -> CallDeadline {
        let window_ticks = (deadline_ticks / 4).max(1);
        let running_cpu = TICK * window_ticks as u32 / 2;
        let max_windows = u32::try_from(3 * deadline_ticks / window_ticks).unwrap_or(u32::MAX).max(1);
        CallDeadline { window_ticks, running_cpu, max_windows, windows: 0, window_start_cpu: Duration::ZERO }
    }

    /// Starts a call: no window granted yet.
    #[inline]
    pub fn reset(&mut self) {
        self.windows = 0;
    }

    /// The deadline (or the current window) has passed: interrupt, or give one more window.
    pub fn expired(&mut self, now_cpu: Duration) -> UpdateDeadline {
        let used = now_cpu.saturating_sub(self.window_start_cpu);
        let first = self.windows == 0;
        if self.windows >= self.max_windows || (!first && used >= self.running_cpu) {
            return UpdateDeadline::Interrupt;
        }
        self.windows += 1;
        self.window_start_cpu = now_cpu;
        UpdateDeadline::Continue(self.window_ticks)
    }
}

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec out-pointer for clock_gettime; the clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interrupts(u: UpdateDeadline) -> bool {
        matches!(u, UpdateDeadline::Interrupt)
    }

    #[test]
    fn a_running_call_is_interrupted_after_one_window() {
        let mut d = CallDeadline::new(11);
        d.reset();
        assert!(!interrupts(d.expired(Duration::from_millis(100))));
        // It used the whole window's CPU.
        assert!(interrupts(d.expired(Duration::from_millis(102))));
    }

    /// Ticks a call whose thread never gets the CPU is given before it is interrupted.
    fn ticks_until_interrupted(deadline_ticks: u64) -> u64 {
        let mut d = CallDeadline::new(deadline_ticks);
        d.reset();
        let mut ticks = deadline_ticks;
        loop {
            match d.expired(Duration::from_millis(5)) {
                UpdateDeadline::Continue(n) => ticks += n,
                _ => return ticks,
            }
        }
    }

    #[test]
    fn a_descheduled_call_gets_windows_up_to_four_deadlines() {
        for deadline in [1, 2, 3, 5, 8, 11, 101] {
            let ticks = ticks_until_interrupted(deadline);
            assert!(ticks > deadline && ticks <= 4 * deadline, "deadline {deadline} ticks: interrupted after {ticks}");
        }
        // The next call starts afresh.
        let mut d = CallDeadline::new(8);
        d.reset();
        while !interrupts(d.expired(Duration::from_millis(5))) {}
        d.reset();
        assert!(!interrupts(d.expired(Duration::from_millis(5))));
    }

    #[test]
    fn a_window_is_at_least_one_tick() {
        let mut d = CallDeadline::new(2);
        d.reset();
        assert!(matches!(d.expired(Duration::ZERO), UpdateDeadline::Continue(1)));
        assert!(interrupts(d.expired(Duration::from_micros(600))));
    }

}
