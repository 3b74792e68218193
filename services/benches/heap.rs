//! What heap profiling costs: nanoseconds per allocation and free through
//! the system allocator, through the sampled one with sampling off (a
//! binary that has it but pushes nothing), and with sampling on; then the
//! pusher's snapshot (naming the stacks, cold and warm) and how close the
//! estimate from samples comes to what is kept. Prints its section of BENCHMARKS.md
//! (and writes it under `BENCH_RESULTS` when set, for `scripts/bench`).
//!
//! cargo bench -p mythical-services --bench heap

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::time::Instant;

use lab_testkit::{Goal, Section, thousands};
use mythical_services::heap::{self, Sampled};

#[global_allocator]
static HEAP: Sampled = Sampled;

/// Allocates and frees `rounds` blocks of `size` through `allocator`;
/// nanoseconds per pair, best of three.
fn pairs(allocator: &dyn GlobalAlloc, size: usize, rounds: usize) -> f64 {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..rounds {
            // SAFETY: a non-zero layout; every block is freed with it.
            unsafe {
                let block = allocator.alloc(layout);
                std::hint::black_box(block);
                allocator.dealloc(block, layout);
            }
        }
        best = best.min(started.elapsed().as_nanos() as f64 / rounds as f64);
    }
    best
}

/// Keeps `blocks` allocations of `size` from one of `sites` distinct call
/// paths (a recursion depth each), so the profile has that many stacks.
#[inline(never)]
fn keep(depth: usize, size: usize, into: &mut Vec<Vec<u8>>) {
    if depth == 0 {
        into.push(std::hint::black_box(vec![1u8; size]));
    } else {
        keep(depth - 1, size, into);
        // Work after the call, so the recursion stays a call per level.
        std::hint::black_box(depth);
    }
}

fn main() {
    let mut section = Section::new("heap");
    let sizes = [64usize, 1024, 48 * 1024];
    let rounds = |size: usize| if size > 4096 { 200_000 } else { 2_000_000 };
    let mut costs = Vec::new();
    for size in sizes {
        let system = pairs(&System, size, rounds(size));
        heap::enable(false);
        let off = pairs(&HEAP, size, rounds(size));
        heap::enable(true);
        let on = pairs(&HEAP, size, rounds(size));
        heap::enable(false);
        costs.push((size, system, off, on));
    }
    section.paragraph(format!(
        "Allocation plus free, best of three runs of {} ({} for blocks over 4 KiB).",
        thousands(rounds(64) as u64),
        thousands(rounds(48 * 1024) as u64)
    ));
    section.table(&["block", "system", "sampled, off", "sampled, on"]);
    for (size, system, off, on) in &costs {
        section.row([
            block(*size),
            format!("{system:.1} ns"),
            format!("{off:.1} ns"),
            format!("{on:.1} ns"),
        ]);
    }

    // A heap like a service's: 64 MiB kept in 48 KiB blocks from 40 call
    // paths, plus small churn.
    heap::enable(true);
    let mut kept = Vec::new();
    for i in 0..(64 * 1024 / 48) {
        keep(i % 40, 48 * 1024, &mut kept);
    }
    let kept_first = mib_kept(&kept);
    for _ in 0..200_000 {
        std::hint::black_box(vec![0u8; 256]);
    }
    heap::enable(false);
    let mut names = HashMap::new();
    let started = Instant::now();
    let cold = heap::snapshot(&mut names);
    let cold_ms = started.elapsed().as_secs_f64() * 1e3;
    heap::enable(true);
    for i in 0..(64 * 1024 / 48) {
        keep(i % 40, 48 * 1024, &mut kept);
    }
    heap::enable(false);
    let kept_later = mib_kept(&kept);
    let started = Instant::now();
    let warm = heap::snapshot(&mut names);
    let warm_ms = started.elapsed().as_secs_f64() * 1e3;
    let mib = |costs: &[heap::StackCost]| {
        costs.iter().map(|c| c.bytes).sum::<u64>() as f64 / 1024.0 / 1024.0
    };
    let body = heap::folded(&warm.in_use, |c| c.bytes);
    let (cold_mib, warm_mib) = (mib(&cold.in_use), mib(&warm.in_use));
    section.table(&["the pusher's snapshot", "result"]);
    section.row([
        "first (names every stack from the symbol table)".to_owned(),
        format!(
            "{cold_ms:.1} ms, {} stacks, {cold_mib:.1} MiB estimated in use of {kept_first:.1} MiB kept",
            cold.in_use.len()
        ),
    ]);
    section.row([
        "later (names cached)".to_owned(),
        format!(
            "{warm_ms:.1} ms, {} stacks, {warm_mib:.1} MiB estimated of {kept_later:.1} MiB kept, a {:.0} KB folded push",
            warm.in_use.len(),
            body.len() as f64 / 1000.0
        ),
    ]);
    drop(kept);

    let (_, system, off, on) = costs[costs.len() - 1];
    section.paragraph(format!(
        "A {} block costs {:.1} ns more than through the system allocator with sampling on, {:.1} ns with it off.",
        block(sizes[sizes.len() - 1]),
        on - system,
        off - system
    ));
    let error = |estimate: f64, kept: f64| (estimate - kept) / kept * 100.0;
    let (first, later) = (error(cold_mib, kept_first), error(warm_mib, kept_later));
    section.goals(&[Goal::new(
        "the estimate from samples within 10% of what is really kept",
        first.abs() <= 10.0 && later.abs() <= 10.0,
        format!("{first:+.1}% at the first snapshot, {later:+.1}% at the later"),
    )]);
    section.finish();
}

/// MiB held by the kept blocks.
fn mib_kept(kept: &[Vec<u8>]) -> f64 {
    kept.iter().map(Vec::len).sum::<usize>() as f64 / 1024.0 / 1024.0
}

fn block(size: usize) -> String {
    if size > 4096 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}
