//! What heap profiling costs: nanoseconds per allocation and free through
//! the system allocator, through the sampled one with sampling off (a
//! binary that has it but pushes nothing), and with sampling on; then the
//! pusher's snapshot (naming the stacks, cold and warm) and the memory the
//! sampled blocks' bookkeeping takes. Prints a Markdown table for
//! BENCHMARKS.md.
//!
//! cargo bench -p mythical-services --bench heap

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::time::Instant;

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
    let sizes = [64usize, 1024, 48 * 1024];
    let rounds = |size: usize| if size > 4096 { 200_000 } else { 2_000_000 };
    println!("| block | system | sampled, off | sampled, on |");
    println!("|---|---|---|---|");
    for size in sizes {
        let system = pairs(&System, size, rounds(size));
        heap::enable(false);
        let off = pairs(&HEAP, size, rounds(size));
        heap::enable(true);
        let on = pairs(&HEAP, size, rounds(size));
        heap::enable(false);
        println!("| {size} B | {system:.1} ns | {off:.1} ns | {on:.1} ns |");
    }

    // A heap like a service's: 64 MiB kept in 48 KiB blocks from 40 call
    // paths, plus small churn.
    heap::enable(true);
    let mut kept = Vec::new();
    for i in 0..(64 * 1024 / 48) {
        keep(i % 40, 48 * 1024, &mut kept);
    }
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
    let started = Instant::now();
    let warm = heap::snapshot(&mut names);
    let warm_ms = started.elapsed().as_secs_f64() * 1e3;
    let mib = |costs: &[heap::StackCost]| {
        costs.iter().map(|c| c.bytes).sum::<u64>() as f64 / 1024.0 / 1024.0
    };
    let body = heap::folded(&warm.in_use, |c| c.bytes);
    println!();
    println!("| snapshot | result |");
    println!("|---|---|");
    println!(
        "| first (names every stack) | {cold_ms:.1} ms, {} stacks in use, {:.1} MiB in use of 64 kept |",
        cold.in_use.len(),
        mib(&cold.in_use)
    );
    println!(
        "| next (names cached) | {warm_ms:.1} ms, {} stacks, {:.1} MiB in use of 128 kept, folded body {:.1} KB |",
        warm.in_use.len(),
        mib(&warm.in_use),
        body.len() as f64 / 1000.0
    );
    drop(kept);
}
