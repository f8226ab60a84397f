//! Keeps the collector's memory on ordinary 4 KiB pages. mimalloc asks for transparent huge
//! pages on its arenas and gives freed spans back to the kernel after a few milliseconds; with
//! huge pages each reuse faults in and zeroes 2 MiB again. Measured on the daemon under load
//! (`make bench-collector-load`), that churn cost 5x the CPU per event (27–31 µs against
//! 5.6–5.9 µs with huge pages off, same build, same hour); mimalloc's maintainers advise the
//! same for such workloads (issues microsoft/mimalloc#1323 and #1373).

/// Turns transparent huge pages off for this process (every later page fault, whatever the
/// system-wide setting). Returns false where the kernel refuses; the collector runs either way.
pub fn opt_out() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn the_process_reports_huge_pages_off() {
        assert!(super::opt_out());
        // SAFETY: PR_GET_THP_DISABLE takes no pointer.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) }, 1);
    }
}
