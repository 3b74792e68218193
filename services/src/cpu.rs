//! CPU sampling, the way pprof and Pyroscope's agents do it on Linux: the
//! process's CPU-time timer (`ITIMER_PROF`) raises SIGPROF every
//! 1/[`SAMPLE_RATE`] s of CPU the process uses, on a thread that is
//! running; the handler records that thread's stack (return addresses
//! only) into a fixed ring, and the profiler's thread drains the ring and
//! counts stacks ([`drain`]). Names come later, from the symbol table
//! ([`crate::symbols`]), once per address.
//!
//! The handler allocates nothing, takes no lock and keeps `errno`. It
//! unwinds with the system unwinder, which is re-entrant but not
//! async-signal-safe in one place: its cache of loaded objects. So a
//! thread that is already unwinding (inside the heap profiler, see
//! [`crate::heap::inside_profiler`]) is not sampled; the sample is counted
//! as dropped instead.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Samples per second of CPU time: Pyroscope's default, about 1% of one
/// core's time at worst.
pub const SAMPLE_RATE: u32 = 100;

/// The deepest stack kept.
const DEPTH: usize = 96;
/// Samples the ring holds between two drains (a drain a second takes at
/// most `SAMPLE_RATE` per busy core).
const SLOTS: usize = 512;

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FULL: u8 = 2;

struct Slot {
    state: AtomicU8,
    depth: UnsafeCell<usize>,
    frames: UnsafeCell<[usize; DEPTH]>,
}

// SAFETY: a slot's cells are written only by whoever moved its state from
// EMPTY to WRITING, and read only once it is FULL.
unsafe impl Sync for Slot {}

static RING: [Slot; SLOTS] = [const {
    Slot {
        state: AtomicU8::new(EMPTY),
        depth: UnsafeCell::new(0),
        frames: UnsafeCell::new([0; DEPTH]),
    }
}; SLOTS];
static NEXT: AtomicUsize = AtomicUsize::new(0);
static SAMPLING: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Installs the handler and starts the timer. Sampling is process-wide, so
/// a second call changes nothing.
pub fn start() -> std::io::Result<()> {
    if SAMPLING.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    // SAFETY: a handler that only touches statics built for it; the
    // sigaction and itimerval are fully initialised.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigprof as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()) != 0 {
            SAMPLING.store(false, Ordering::SeqCst);
            return Err(std::io::Error::last_os_error());
        }
        set_timer(1_000_000 / SAMPLE_RATE as i64)
    }
}

/// Stops the timer; a signal still in flight finds sampling off.
pub fn stop() {
    if SAMPLING.swap(false, Ordering::SeqCst) {
        // SAFETY: as in `start`.
        let _ = unsafe { set_timer(0) };
    }
}

unsafe fn set_timer(micros: i64) -> std::io::Result<()> {
    let every = libc::timeval {
        tv_sec: 0,
        tv_usec: micros as libc::suseconds_t,
    };
    let timer = libc::itimerval {
        it_interval: every,
        it_value: every,
    };
    // SAFETY: a valid itimerval; the old value is not asked for.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The address the signal interrupted, from the saved registers.
fn interrupted_at(context: *mut libc::c_void) -> usize {
    if context.is_null() {
        return 0;
    }
    // SAFETY: with SA_SIGINFO the third argument is the thread's saved
    // `ucontext_t`.
    let context = unsafe { &*(context as *const libc::ucontext_t) };
    #[cfg(target_arch = "x86_64")]
    {
        context.uc_mcontext.gregs[libc::REG_RIP as usize] as usize
    }
    #[cfg(target_arch = "aarch64")]
    {
        context.uc_mcontext.pc as usize
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = context;
        0
    }
}

extern "C" fn on_sigprof(_: libc::c_int, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: errno is this thread's; it is put back before returning, so
    // the interrupted code never sees the handler's.
    let errno = unsafe { *libc::__errno_location() };
    if SAMPLING.load(Ordering::Relaxed) {
        if crate::heap::inside_profiler() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        } else {
            record(interrupted_at(context));
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn record(pc: usize) {
    let slot = &RING[NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS];
    if slot
        .state
        .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // The ring is full: the drain is late.
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: this handler owns the slot until it marks it FULL.
    let frames = unsafe { &mut *slot.frames.get() };
    let mut depth = 0;
    // The unwinder starts in this handler; the program's stack starts at
    // the interrupted address, the first frame past the kernel's signal
    // frame. Unknown (0), the whole stack is kept.
    let mut in_program = pc == 0;
    // SAFETY: unwinding this thread's own stack; the unsynchronised
    // variant, since the synchronised one takes a lock.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            if !in_program {
                in_program = ip == pc;
                if !in_program {
                    return true;
                }
            }
            frames[depth] = ip;
            depth += 1;
            depth < DEPTH
        });
    }
    if depth == 0 {
        frames[0] = pc;
        depth = 1;
    }
    // SAFETY: as above.
    unsafe { *slot.depth.get() = depth };
    slot.state.store(FULL, Ordering::Release);
}

/// Stacks (leaf first, the first address exact, the others return
/// addresses) and how many samples each got.
pub type Counts = HashMap<Box<[usize]>, u64>;

/// Moves every recorded sample into `counts`; returns how many samples
/// were dropped since the last call.
pub fn drain(counts: &mut Counts) -> u64 {
    for slot in &RING {
        if slot.state.load(Ordering::Acquire) != FULL {
            continue;
        }
        // SAFETY: a FULL slot is no longer written until it is EMPTY.
        let stack: Box<[usize]> = unsafe {
            let depth = *slot.depth.get();
            (&*slot.frames.get())[..depth].into()
        };
        slot.state.store(EMPTY, Ordering::Release);
        *counts.entry(stack).or_default() += 1;
    }
    DROPPED.swap(0, Ordering::Relaxed)
}

/// A stack's names, root first; `cache` keeps each address's name between
/// calls.
pub fn stack_names(stack: &[usize], cache: &mut HashMap<usize, String>) -> Vec<String> {
    let mut names: Vec<String> = stack
        .iter()
        .enumerate()
        .map(|(i, &ip)| crate::symbols::frame_name(ip, i == 0, cache))
        .collect();
    names.reverse();
    names
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Burns CPU until `until`, in a frame of its own for the profiles to
    /// name.
    #[inline(never)]
    pub(crate) fn spin_the_wheel(until: Instant) -> u64 {
        let mut x = 1u64;
        while Instant::now() < until {
            for i in 0..50_000u64 {
                x = (x ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            }
            x = std::hint::black_box(x);
        }
        x
    }

    #[test]
    fn a_busy_function_is_sampled_and_named() {
        start().unwrap();
        spin_the_wheel(Instant::now() + Duration::from_millis(600));
        stop();
        let mut counts = Counts::new();
        drain(&mut counts);
        let total: u64 = counts.values().sum();
        // 600 ms of CPU at 100 Hz: about 60 samples, fewer on a busy machine.
        assert!(total >= 20, "{total} samples");
        let mut cache = HashMap::new();
        let in_wheel: u64 = counts
            .iter()
            .filter(|(stack, _)| {
                stack_names(stack, &mut cache)
                    .iter()
                    .any(|n| n.ends_with("cpu::tests::spin_the_wheel"))
            })
            .map(|(_, n)| n)
            .sum();
        assert!(
            in_wheel * 2 > total,
            "{in_wheel} of {total} samples in spin_the_wheel: {:?}",
            counts
                .keys()
                .take(3)
                .map(|s| stack_names(s, &mut cache))
                .collect::<Vec<_>>()
        );
        // No stack starts inside the handler.
        assert!(
            cache.values().all(|n| !n.contains("on_sigprof")),
            "the handler's own frames were kept"
        );
    }
}
