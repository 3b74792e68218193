//! Continuous heap profiling, the way Go's runtime does it: a global
//! allocator samples about one allocation per [`SAMPLE_BYTES`] allocated
//! (a Poisson process over bytes, so big and small allocations are fairly
//! represented once scaled), keeps the stack of each sampled allocation while
//! it lives, and the profiler ([`crate::profiling::Profiler`]) sends every ten
//! seconds, in Pyroscope's ingest format, the memory in use now
//! (`inuse_space`, `inuse_objects`) and the memory allocated since the last
//! push (`alloc_space`, `alloc_objects`).
//!
//! A binary opts in with
//! `#[global_allocator] static HEAP: mythical_services::heap::Sampled = mythical_services::heap::Sampled;`;
//! sampling starts when the pusher does, so a process that profiles
//! nothing pays one relaxed load per allocation.
//!
//! The allocator must never allocate through itself while it records, nor
//! lock twice: a thread-local flag marks a thread that is inside the
//! profiler (its allocations and frees are not sampled), and a counting
//! filter keyed by address lets a free skip the lock unless the block may
//! be sampled.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The mean number of bytes allocated between two samples (Go's
/// `MemProfileRate`).
pub const SAMPLE_BYTES: u64 = 512 * 1024;

/// The deepest stack kept (a debug build's async stacks run deep).
const MAX_FRAMES: usize = 128;

/// How many sampled blocks live at addresses of each hash: a free looks at
/// its address's count and takes the lock only when it is not zero (a
/// counting filter, so a reused address costs nothing once its block is
/// gone).
const FILTER_SLOTS: usize = 16 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static FILTER: [AtomicU32; FILTER_SLOTS] = [const { AtomicU32::new(0) }; FILTER_SLOTS];
static HEAP: Mutex<Option<Heap>> = Mutex::new(None);

thread_local! {
    /// Bytes this thread may still allocate before its next sample.
    static BUDGET: Cell<i64> = const { Cell::new(SAMPLE_BYTES as i64) };
    /// Set while the thread is inside the profiler.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// The thread's xorshift state for the next sampling interval.
    static RANDOM: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, sampled.
pub struct Sampled;

// SAFETY: every call is passed to `System` unchanged; the bookkeeping only
// reads the returned pointer's address.
unsafe impl GlobalAlloc for Sampled {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        allocated(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        allocated(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        freed(ptr);
        // SAFETY: `ptr` came from this allocator, which is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            freed(ptr);
            allocated(moved, new_size);
        }
        moved
    }
}

/// Whether this process allocates through [`Sampled`].
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Whether this thread is inside the profiler now (recording a sample,
/// naming stacks, pushing): the CPU sampler's signal handler leaves such a
/// thread alone. A plain thread-local read, safe in a signal handler.
pub fn inside_profiler() -> bool {
    BUSY.with(Cell::get)
}

/// Runs `f` with this thread's allocations unsampled (the profiler's own
/// work, so it neither shows up in the profile nor re-enters it).
pub fn unsampled<T>(f: impl FnOnce() -> T) -> T {
    let was = BUSY.with(|b| b.replace(true));
    let out = f();
    BUSY.with(|b| b.set(was));
    out
}

#[inline]
fn allocated(ptr: *mut u8, size: usize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    if ptr.is_null() || !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let due = BUDGET.with(|budget| {
        let left = budget.get() - size as i64;
        budget.set(left);
        left <= 0
    });
    if !due || BUSY.with(|b| b.replace(true)) {
        // Inside the profiler already: the budget stays spent, so the
        // thread's next allocation outside it is the sample.
        return;
    }
    BUDGET.with(|budget| budget.set(next_interval()));
    record(ptr as usize, size);
    BUSY.with(|b| b.set(false));
}

#[inline]
fn freed(ptr: *mut u8) {
    let slot = slot(ptr as usize);
    if FILTER[slot].load(Ordering::Relaxed) == 0 || BUSY.with(|b| b.replace(true)) {
        return;
    }
    if let Some(heap) = lock().as_mut()
        && heap.live.remove(&(ptr as usize)).is_some()
    {
        FILTER[slot].fetch_sub(1, Ordering::Relaxed);
    }
    BUSY.with(|b| b.set(false));
}

fn slot(address: usize) -> usize {
    (((address as u64) >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 50) as usize
}

fn lock() -> std::sync::MutexGuard<'static, Option<Heap>> {
    HEAP.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An exponentially distributed interval with mean [`SAMPLE_BYTES`], from
/// the thread's own xorshift sequence.
fn next_interval() -> i64 {
    let mut x = RANDOM.with(Cell::get);
    if x == 0 {
        // Any odd, thread-distinct start will do: the address of a local.
        x = (&raw const x as u64) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    RANDOM.with(|r| r.set(x));
    let uniform = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    (-uniform.ln() * SAMPLE_BYTES as f64).max(1.0) as i64
}

/// What one sampled allocation stands for, scaled up by the chance of
/// sampling it: `1 / (1 - e^(-size / SAMPLE_BYTES))` objects of `size`.
fn weight(size: usize) -> (u64, u64) {
    let chance = 1.0 - (-(size as f64) / SAMPLE_BYTES as f64).exp();
    let objects = if chance > 0.0 { 1.0 / chance } else { 1.0 };
    (
        (size as f64 * objects) as u64,
        objects.round().max(1.0) as u64,
    )
}

#[derive(Debug, Clone, Copy)]
struct Live {
    stack: u32,
    bytes: u64,
    objects: u64,
}

#[derive(Default)]
struct Heap {
    /// Sampled blocks still allocated, by address.
    live: HashMap<usize, Live>,
    /// Every stack seen, leaf first, as return addresses.
    stacks: Vec<Box<[usize]>>,
    index: HashMap<Box<[usize]>, u32>,
    /// Bytes and objects allocated per stack since the last snapshot.
    allocated: HashMap<u32, (u64, u64)>,
}

impl Heap {
    fn intern(&mut self, frames: &[usize]) -> u32 {
        if let Some(id) = self.index.get(frames) {
            return *id;
        }
        let id = self.stacks.len() as u32;
        self.stacks.push(frames.into());
        self.index.insert(frames.into(), id);
        id
    }
}

fn record(address: usize, size: usize) {
    let mut frames = [0usize; MAX_FRAMES];
    let mut depth = 0;
    // SAFETY: the unwinder runs on this thread only; the unsynchronized
    // variant is needed because the synchronized one may allocate.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            frames[depth] = frame.ip() as usize;
            depth += 1;
            depth < MAX_FRAMES
        });
    }
    let (bytes, objects) = weight(size);
    let mut guard = lock();
    let heap = guard.get_or_insert_with(Heap::default);
    let stack = heap.intern(&frames[..depth]);
    let live = Live {
        stack,
        bytes,
        objects,
    };
    // A block at an address the map still holds was freed unseen (by a
    // thread inside the profiler); it is replaced, and counted once.
    if heap.live.insert(address, live).is_none() {
        FILTER[slot(address)].fetch_add(1, Ordering::Relaxed);
    }
    let total = heap.allocated.entry(stack).or_default();
    total.0 += bytes;
    total.1 += objects;
}

/// Starts (or stops) sampling.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// One stack's share of a profile: frames root first, bytes, objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackCost {
    pub frames: Vec<String>,
    pub bytes: u64,
    pub objects: u64,
}

/// The heap now and what was allocated since the last snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub in_use: Vec<StackCost>,
    pub allocated: Vec<StackCost>,
}

/// Takes the heap's state (resetting what was allocated) and names its
/// stacks; `names` caches the names of return addresses between calls.
pub fn snapshot(names: &mut HashMap<usize, String>) -> Snapshot {
    unsampled(|| {
        let (in_use, allocated, stacks) = {
            let mut guard = lock();
            let Some(heap) = guard.as_mut() else {
                return Snapshot::default();
            };
            let mut in_use: HashMap<u32, (u64, u64)> = HashMap::new();
            for live in heap.live.values() {
                let sum = in_use.entry(live.stack).or_default();
                sum.0 += live.bytes;
                sum.1 += live.objects;
            }
            let allocated = std::mem::take(&mut heap.allocated);
            let stacks: HashMap<u32, Box<[usize]>> = in_use
                .keys()
                .chain(allocated.keys())
                .map(|id| (*id, heap.stacks[*id as usize].clone()))
                .collect();
            (in_use, allocated, stacks)
        };
        let mut named = |costs: HashMap<u32, (u64, u64)>| {
            let mut out: Vec<StackCost> = costs
                .into_iter()
                .filter(|(_, (bytes, _))| *bytes > 0)
                .map(|(id, (bytes, objects))| StackCost {
                    frames: stack_names(&stacks[&id], names),
                    bytes,
                    objects,
                })
                .collect();
            out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.frames.cmp(&b.frames)));
            out
        };
        Snapshot {
            in_use: named(in_use),
            allocated: named(allocated),
        }
    })
}

/// Frames that are the unwinder, the profiler and the allocator, not the
/// program: the run of them at the leaf end of every stack is cut.
const OWN_FRAMES: [&str; 9] = [
    "backtrace::",
    "<backtrace::",
    "_Unwind_",
    "mythical_services::heap::",
    "<mythical_services::heap::",
    "__rustc::",
    "__rust_alloc",
    "__rust_realloc",
    "__rdl_",
];

fn own_frame(name: &str) -> bool {
    OWN_FRAMES.iter().any(|p| name.starts_with(p)) || name.starts_with("0x")
}

/// A stack's function names, root first, without the profiler's frames.
fn stack_names(frames: &[usize], cache: &mut HashMap<usize, String>) -> Vec<String> {
    let leaf_first = frames
        .iter()
        .enumerate()
        // 0 is the unwinder's end of the stack, not a frame; the first
        // frame is the unwinder's own address.
        .filter(|(_, ip)| **ip != 0)
        .map(|(i, &ip)| crate::symbols::frame_name(ip, i == 0, cache))
        .collect();
    trimmed(leaf_first)
}

/// A stack, leaf first, as the profile shows it: root first, without the
/// profiler's frames at the leaf.
fn trimmed(mut leaf_first: Vec<String>) -> Vec<String> {
    // The profiler's run at the leaf, then the standard library's frames
    // there (`RawVec` growing, a `vec!` filling), so a block's bytes are the
    // self cost of the code that asked for it, as a learner reads a heap
    // profile. Only the leaf run: `__rust_try` or `alloc::` deeper down is
    // the program's own path.
    let own = leaf_first.iter().take_while(|n| own_frame(n)).count();
    let mut root_first: Vec<String> = leaf_first.split_off(own);
    let library = root_first
        .iter()
        .take_while(|name| standard_library(name))
        .count();
    if library < root_first.len() {
        root_first.drain(..library);
    }
    root_first.reverse();
    root_first
}

/// Whether a frame is in `core`, `alloc` or `std`, also as a primitive's
/// impl of one of their traits (`<u8 as alloc::vec::SpecFromElem>::from_elem`).
fn standard_library(frame: &str) -> bool {
    let path = frame.trim_start_matches(['<', '&']);
    let path = path.strip_prefix("mut ").unwrap_or(path);
    let path = path.strip_prefix("dyn ").unwrap_or(path);
    let in_std = |path: &str| matches!(path.split("::").next(), Some("core" | "alloc" | "std"));
    match path.split_once(" as ") {
        Some((ty, tr)) if !ty.contains("::") => in_std(tr),
        _ => in_std(path),
    }
}

/// A profile in the folded text format `/ingest` reads: one line per
/// stack, frames root first joined by `;`, a space, the value.
pub fn folded(costs: &[StackCost], value: impl Fn(&StackCost) -> u64) -> String {
    let mut body = String::new();
    for cost in costs {
        let frames: Vec<String> = cost.frames.iter().map(|f| f.replace(';', ":")).collect();
        if frames.is_empty() {
            continue;
        }
        body.push_str(&frames.join(";"));
        body.push(' ');
        body.push_str(&value(cost).to_string());
        body.push('\n');
    }
    body
}

/// Two malloc arenas for the whole process, called before its threads
/// start. glibc gives each busy thread an arena of its own, and what is
/// freed stays spread over them: the backend, whose store evicts all day,
/// held 106 MB of PSS against 81 MB with two after ten minutes of a lab,
/// and a service under load 33 MB of RSS against 30 with its export and
/// profiler threads.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_allocations_count_once_small_ones_are_scaled_up() {
        let (bytes, objects) = weight(64 * 1024 * 1024);
        assert_eq!((bytes, objects), (64 * 1024 * 1024, 1));
        let (bytes, objects) = weight(64);
        // One sampled 64-byte block stands for about 8192 of them.
        assert!((8000..8400).contains(&objects), "{objects}");
        assert!((bytes as i64 - SAMPLE_BYTES as i64).abs() < 1024, "{bytes}");
    }

    #[test]
    fn intervals_average_the_sampling_rate() {
        let n = 20_000;
        let mean = (0..n).map(|_| next_interval()).sum::<i64>() / n;
        let rate = SAMPLE_BYTES as i64;
        assert!((mean - rate).abs() < rate / 20, "mean interval {mean}");
    }

    #[test]
    fn folded_lines_are_root_first_and_keep_no_separator_inside_a_frame() {
        let costs = vec![
            StackCost {
                frames: vec!["main".into(), "serve".into(), "keep<a;b>".into()],
                bytes: 4096,
                objects: 2,
            },
            StackCost {
                frames: Vec::new(),
                bytes: 1,
                objects: 1,
            },
        ];
        assert_eq!(folded(&costs, |c| c.bytes), "main;serve;keep<a:b> 4096\n");
        assert_eq!(folded(&costs, |c| c.objects), "main;serve;keep<a:b> 2\n");
    }

    #[test]
    fn the_standard_library_is_told_from_the_program() {
        for library in [
            "alloc::raw_vec::RawVecInner<A>::try_allocate_in",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
            "std::collections::hash::map::HashMap<K,V,S>::insert",
        ] {
            assert!(standard_library(library), "{library}");
        }
        for program in [
            "mythical_services::server::cache::AnswerCache::remember",
            "<mythical_services::server::State as core::clone::Clone>::clone",
            "<u8 as mythical_services::Thing>::f",
            "tokio::runtime::task::raw::poll",
        ] {
            assert!(!standard_library(program), "{program}");
        }
    }

    #[test]
    fn a_stack_loses_the_profiler_and_library_leaf_but_keeps_its_path() {
        let leaf_first = [
            "backtrace::backtrace::libunwind::trace",
            "_Unwind_Backtrace",
            "mythical_services::heap::record",
            "<mythical_services::heap::Sampled as core::alloc::global::GlobalAlloc>::alloc",
            "__rustc::__rust_alloc",
            "alloc::alloc::Global::alloc_impl",
            "alloc::raw_vec::RawVecInner<A>::try_allocate_in",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "mythical_services::server::cache::AnswerCache::remember",
            "std::panicking::catch_unwind",
            "__rust_try",
            "tokio::runtime::task::harness::poll_future",
            "start_thread",
        ];
        let stack = trimmed(leaf_first.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            stack,
            [
                "start_thread",
                "tokio::runtime::task::harness::poll_future",
                "__rust_try",
                "std::panicking::catch_unwind",
                "mythical_services::server::cache::AnswerCache::remember",
            ]
        );
        // A stack of nothing but the library keeps its library frames.
        let only_std = vec!["__rust_alloc".into(), "std::thread::spawn".into()];
        assert_eq!(trimmed(only_std), ["std::thread::spawn"]);
    }

    #[test]
    fn addresses_spread_over_the_filter() {
        let mut slots = std::collections::HashSet::new();
        for block in 0..4096usize {
            let slot = slot(0x7f00_0000_0000 + block * 48 * 1024);
            assert!(slot < FILTER_SLOTS);
            slots.insert(slot);
        }
        assert!(
            slots.len() > 3000,
            "{} of 4096 blocks got their own slot",
            slots.len()
        );
    }
}
