//! CPU execution settings for the threads that compute.
//!
//! Denormal (subnormal) floats are flushed to zero: once training sharpens the attention,
//! softmax writes values below 1.2e-38 and every AVX-512 FMA that reads one takes a microcode
//! assist. Measured on the default model's recipe: from the step the learning rate peaked, a
//! step took 2.3 times as long, with the gemm kernel going from 41% to 68% of the profile. Values
//! that small change no result that matters (deep-learning frameworks flush them too).

/// Sets flush-to-zero and denormals-are-zero on the calling thread (x86-64; elsewhere a no-op).
pub fn flush_denormals_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    {
        /// MXCSR bit 15 (FTZ: results flush to zero) and bit 6 (DAZ: inputs read as zero).
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let mut csr: u32 = 0;
        // SAFETY: reads and writes this thread's MXCSR register through a local; only the
        // denormal-handling bits change.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
        }
    }
}

/// Flushes denormals on this thread and on every thread of the global rayon pool that the CPU
/// backend's operators run on. Call once, before any tensor work (the `flowlm` binary does).
pub fn configure_compute_threads() {
    flush_denormals_on_this_thread();
    // Err only when the pool already exists (a second call); its threads were configured then.
    let _ = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| flush_denormals_on_this_thread())
        .build_global();
}

/// Runs `work` on a thread of the global rayon pool and returns its result; the calling thread
/// waits.
///
/// The CPU backend's operators split their work through rayon. Called from a pool thread, an
/// operator queues its parts on that thread's own deque and computes one itself; called from any
/// other thread, each operator hands its whole job to the pool and sleeps until it is done, and
/// a forward pass runs about a hundred of them. On batch-1 generation that hand-off (wake-ups,
/// futex sleeps) was a quarter of the profile. Wrap long compute work in this, never a thread
/// that blocks on I/O for its life (an HTTP runtime would hold a pool thread the operators need).
pub fn on_compute_threads<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    rayon::scope(|_| work())
}

/// The cores this process may use, read once (the lookup reads cgroup files; samplers ask on
/// every forward pass).
pub fn compute_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `work` on every input, at most `threads` at a time (the first of each wave on the calling
/// thread), results in input order. New threads inherit this thread's floating-point settings
/// (POSIX), so flushed denormals stay flushed. A panic in one job is resumed here.
pub fn parallel_map<I: Send, T: Send>(
    inputs: Vec<I>,
    threads: usize,
    work: impl Fn(I) -> T + Sync,
) -> Vec<T> {
    let threads = threads.max(1);
    let mut inputs = inputs.into_iter().peekable();
    let mut outputs = Vec::new();
    while inputs.peek().is_some() {
        let wave: Vec<I> = inputs.by_ref().take(threads).collect();
        std::thread::scope(|scope| {
            let mut wave = wave.into_iter();
            let first = wave.next();
            let handles: Vec<_> = wave
                .map(|input| {
                    let work = &work;
                    scope.spawn(move || work(input))
                })
                .collect();
            outputs.extend(first.map(&work));
            for handle in handles {
                match handle.join() {
                    Ok(output) => outputs.push(output),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn compute_work_runs_on_a_pool_thread_and_returns_its_result() {
        assert_eq!(
            rayon::current_thread_index(),
            None,
            "tests start off the pool"
        );
        let (index, sum) = on_compute_threads(|| {
            let sum: u64 = (1..=1000u64).into_par_iter().sum();
            (rayon::current_thread_index(), sum)
        });
        assert!(index.is_some(), "the work ran on the calling thread");
        assert_eq!(sum, 500_500);
    }
}
