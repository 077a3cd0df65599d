//! Proves the reading hot path does not allocate once warm (window state and the aggregator's
//! `insert`): a counting global allocator counts allocations made by the current thread while a
//! flag is set. Implementing `GlobalAlloc` needs `unsafe`; it is confined to this test binary
//! and every method delegates straight to `System`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::Ordering;

use citysense::config::AggregationConfig;
use citysense::pipeline::aggregate::Aggregator;
use citysense::pipeline::window::{SeriesState, Stats};
use citysense::reading::{GroupKey, Reading, Registry, NANOS_PER_SEC};
use citysense::service::metrics::Metrics;

struct Counting;

thread_local! {
    // `const` init: using them never allocates, so the allocator can consult them. Both are
    // per thread: tests run in parallel and must not count each other's allocations.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every method forwards unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

/// Deterministic values in 1..=100.
fn value(i: u64) -> f64 {
    (i.wrapping_mul(2_654_435_761) % 100 + 1) as f64
}

#[test]
fn counter_sees_allocations() {
    // Guards the other tests against a counter that never counts.
    let n = allocations_in(|| drop(std::hint::black_box(vec![0u8; 64])));
    assert_eq!(n, 1);
}

#[test]
fn inserts_into_a_window_that_fits_the_ring_do_not_allocate() {
    let mut state = SeriesState::new(10_000);
    let n = allocations_in(|| (0..10_000).for_each(|i| state.insert(7, value(i))));
    assert_eq!(n, 0);
    let mut count = 0;
    state.close_before(8, &[950], &mut |s: &Stats| count = s.count);
    assert_eq!(count, 10_000);
}

#[test]
fn inserts_into_a_sketched_window_do_not_allocate() {
    let mut state = SeriesState::new(32);
    // Warm-up: overflow the ring (creates the sketch: counted) over the whole value range.
    let warm_up = allocations_in(|| (0..1_000).for_each(|i| state.insert(7, value(i))));
    assert!(warm_up >= 1, "creating the sketch allocates");
    let n = allocations_in(|| (1_000..11_000).for_each(|i| state.insert(7, value(i))));
    assert_eq!(n, 0);
    let mut stats = None;
    state.close_before(8, &[950], &mut |s: &Stats| stats = Some(*s));
    let stats = stats.unwrap();
    assert!(stats.approximate);
    assert_eq!(stats.count, 11_000);
}

#[test]
fn steady_state_with_grace_and_exact_closes_does_not_allocate() {
    let mut state = SeriesState::new(32);
    let mut emitted = 0u64;
    let mut run = |state: &mut SeriesState, windows: std::ops::Range<i64>| {
        for w in windows {
            // 12 readings of w, interleaved with 3 late ones of w - 1 (still in grace).
            for i in 0..15u64 {
                let window = if i % 5 == 4 { w - 1 } else { w };
                state.insert(window, value(i + w as u64));
            }
            state.close_before(w, &[500, 950, 999], &mut |s: &Stats| {
                assert!(!s.approximate);
                emitted += s.count;
            });
        }
    };
    run(&mut state, 1..10); // warm-up: grows the per-thread sort scratch once
    let n = allocations_in(|| run(&mut state, 10..2_000));
    assert_eq!(n, 0);
    assert!(emitted > 0);
}

#[test]
fn aggregator_insert_does_not_allocate_once_series_are_known() {
    let cfg = AggregationConfig {
        window_secs: 10,
        grace_secs: 1,
        ..AggregationConfig::default()
    };
    let registry = Registry::new();
    let ids: Vec<_> = (0..1_000)
        .map(|i| {
            let g = registry.group(GroupKey::new(
                "air_quality",
                [("sensor".to_string(), format!("s{}", i / 2))],
            ));
            registry
                .series(g, if i % 2 == 0 { "pm2_5" } else { "pm10" })
                .unwrap()
        })
        .collect();
    let metrics = Metrics::new();
    let win = 10 * NANOS_PER_SEC;
    let mut agg = Aggregator::new(&cfg, registry, metrics.pipeline.clone(), 5 * win);
    let reading = |i: u64, w: i64| {
        Reading::new(
            ids[i as usize % ids.len()],
            value(i),
            w * win + (i % 1000) as i64,
        )
    };
    // Warm-up: first sight of each series allocates its slot, ring and field names; one
    // close grows the scratch buffers to size.
    for i in 0..2_000 {
        assert!(agg.insert(reading(i, 5), 5 * win));
    }
    assert!(agg.close_due(6 * win + 2 * NANOS_PER_SEC).is_some());
    // 30 readings per series and window fit the 32-sample ring (a busy series' window gets a
    // sketch, which allocates once per window, not per reading: see pipeline/window.rs).
    let mut total = 0;
    for w in 6..9 {
        total += allocations_in(|| {
            for i in 0..30_000 {
                agg.insert(reading(i, w), w * win);
            }
        });
        let batch = agg
            .close_due((w + 1) * win + 2 * NANOS_PER_SEC)
            .expect("the window closes");
        assert!(
            batch.payload.contains("pm2_5_count=30i"),
            "{}",
            &batch.payload[..200]
        );
    }
    assert_eq!(total, 0);
    assert_eq!(
        metrics.pipeline.readings_aggregated.load(Ordering::Relaxed),
        92_000
    );
}
