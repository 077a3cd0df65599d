use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const ALL: [u16; 5] = [0, 500, 950, 999, 1000];

/// Closes everything before `window` and returns the emitted stats.
fn close(state: &mut SeriesState, window: i64, quantiles: &[u16]) -> Vec<Stats> {
    let mut out = Vec::new();
    state.close_before(window, quantiles, &mut |s: &Stats| out.push(*s));
    out
}

fn assert_close(actual: f64, expected: f64, rel: f64) {
    assert!(
        (actual - expected).abs() <= rel * expected.abs() + 1e-12,
        "{actual} vs {expected} (rel {rel})"
    );
}

#[test]
fn exact_stats_of_a_small_window() {
    let mut state = SeriesState::new(DEFAULT_RING_CAPACITY);
    for v in [4.0, 1.0, 3.0, 2.0] {
        state.insert(5, v);
    }
    let out = close(&mut state, 6, &ALL);
    assert_eq!(out.len(), 1);
    let s = &out[0];
    assert_eq!((s.window, s.count), (5, 4));
    assert_eq!(
        (s.sum, s.mean, s.min, s.max, s.last),
        (10.0, 2.5, 1.0, 4.0, 2.0)
    );
    // Sample variance: ((1.5² + 0.5²) * 2) / 3 = 5/3.
    assert_close(s.stddev, 1.290_994_448_735_805_6, 1e-15);
    // Ranks floor(p * 3): p0 -> 0, p50 -> 1, p95 -> 2, p99.9 -> 2, p100 -> 3.
    assert_eq!(
        s.quantiles(),
        &[(0, 1.0), (500, 2.0), (950, 3.0), (999, 3.0), (1000, 4.0)]
    );
    assert!(!s.approximate);
    assert!(!state.has_open());
    assert_eq!(state.last_value(), Some(2.0));
}

#[test]
fn single_reading_has_zero_stddev() {
    let mut state = SeriesState::new(4);
    state.insert(-3, 21.5);
    let out = close(&mut state, -2, &[950]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].window, out[0].count, out[0].stddev), (-3, 1, 0.0));
    assert_eq!(out[0].get(Stat::Quantile(950)), Some(21.5));
    assert_eq!(out[0].get(Stat::Quantile(500)), None);
}

#[test]
fn grace_period_keeps_two_windows_open() {
    let mut state = SeriesState::new(DEFAULT_RING_CAPACITY);
    state.insert(11, 100.0);
    state.insert(10, 1.0); // late but within grace: opens before 11
    state.insert(11, 200.0);
    state.insert(10, 3.0);
    assert_eq!(state.open_windows().collect::<Vec<_>>(), vec![10, 11]);

    let out = close(&mut state, 11, &[500]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].window, out[0].count, out[0].mean), (10, 2, 2.0));
    assert_eq!(out[0].get(Stat::Quantile(500)), Some(1.0));
    assert!(state.has_open());

    state.insert(11, 300.0);
    state.insert(12, 7.0);
    let out = close(&mut state, 13, &[500]);
    assert_eq!(
        out.iter().map(|s| s.window).collect::<Vec<_>>(),
        vec![11, 12]
    );
    assert_eq!((out[0].count, out[0].sum, out[0].last), (3, 600.0, 300.0));
    assert_eq!(out[0].get(Stat::Quantile(500)), Some(200.0));
    assert_eq!((out[1].count, out[1].last), (1, 7.0));
}

#[test]
fn flood_far_past_the_ring_is_exact_where_it_can_be() {
    let n: u64 = 100_000;
    let mut state = SeriesState::new(32);
    // A permutation of 1..=n, so the true rank-r value is r + 1.
    for i in 0..n {
        state.insert(42, ((i * 7919) % n + 1) as f64);
    }
    let out = close(&mut state, 43, &[500, 950, 990]);
    let s = &out[0];
    assert_eq!(s.count, n);
    assert_eq!(s.sum, (n * (n + 1) / 2) as f64);
    assert_eq!(s.mean, 50_000.5);
    assert_eq!((s.min, s.max), (1.0, n as f64));
    // Population variance of 1..=n is (n² - 1) / 12; sample variance is n(n+1)/12.
    assert_close(s.stddev, ((n * (n + 1)) as f64 / 12.0).sqrt(), 1e-12);
    assert!(s.approximate);
    let alpha = DEFAULT_ALPHA;
    // floor(p * (n - 1)) + 1
    assert_close(s.get(Stat::Quantile(500)).unwrap(), 50_000.0, alpha);
    assert_close(s.get(Stat::Quantile(950)).unwrap(), 95_000.0, alpha);
    assert_close(s.get(Stat::Quantile(990)).unwrap(), 99_000.0, alpha);
}

#[test]
fn exact_up_to_the_ring_capacity_then_sketched() {
    let mut state = SeriesState::new(8);
    (1..=8).for_each(|v| state.insert(1, f64::from(v)));
    let out = close(&mut state, 2, &[500]);
    assert!(!out[0].approximate);
    assert_eq!(out[0].get(Stat::Quantile(500)), Some(4.0));

    // The ring is now full of window 1's samples; overwriting those creates no sketch.
    (1..=8).for_each(|v| state.insert(2, f64::from(v)));
    assert!(state.open.iter().all(|a| a.sketch.is_none()));
    state.insert(2, 9.0);
    let out = close(&mut state, 3, &[500]);
    assert!(out[0].approximate);
    assert_eq!(out[0].count, 9);
    assert_close(out[0].get(Stat::Quantile(500)).unwrap(), 5.0, DEFAULT_ALPHA);
}

#[test]
fn a_newer_window_overwriting_an_open_one_sketches_the_older() {
    let mut state = SeriesState::new(4);
    state.insert(10, 5.0);
    state.insert(10, 6.0);
    (0..4).for_each(|i| state.insert(11, f64::from(i)));
    let out = close(&mut state, 11, &[0, 1000]);
    assert_eq!(out.len(), 1);
    assert!(out[0].approximate, "window 10 lost its samples");
    assert_eq!(out[0].count, 2);
    // Clamped into the exact [min, max].
    assert_eq!(out[0].quantiles(), &[(0, 5.0), (1000, 6.0)]);
    // Window 11 never lost a sample.
    let out = close(&mut state, 12, &[500]);
    assert!(!out[0].approximate);
    assert_eq!(out[0].get(Stat::Quantile(500)), Some(1.0));
}

#[test]
fn without_sketches_an_overflowed_window_has_no_quantiles() {
    let mut state = SeriesState::with_sketch_alpha(4, None);
    (0..10).for_each(|i| state.insert(0, f64::from(i)));
    let out = close(&mut state, 1, &[500]);
    assert_eq!((out[0].count, out[0].max), (10, 9.0));
    assert!(out[0].quantiles().is_empty());
    assert!(!out[0].approximate);
}

#[test]
fn quantile_requests_are_optional_and_bounded() {
    let mut state = SeriesState::new(4);
    (0..10).for_each(|i| state.insert(0, f64::from(i)));
    let out = close(&mut state, 1, &[]);
    assert!(out[0].quantiles().is_empty() && !out[0].approximate);

    (0..3).for_each(|i| state.insert(1, f64::from(i)));
    let many: Vec<u16> = (0..20).map(|i| i * 50).collect();
    let out = close(&mut state, i64::MAX, &many);
    assert_eq!(out[0].quantiles().len(), MAX_QUANTILES);
    assert_eq!(out[0].quantiles()[7].0, 350);
}

#[test]
fn re_entrant_close_does_not_panic() {
    let mut a = SeriesState::new(4);
    let mut b = SeriesState::new(4);
    a.insert(0, 1.0);
    b.insert(0, 2.0);
    let mut seen = Vec::new();
    a.close_before(1, &[500], &mut |sa: &Stats| {
        b.close_before(1, &[500], &mut |sb: &Stats| seen.push(sb.mean));
        seen.push(sa.mean);
    });
    assert_eq!(seen, vec![2.0, 1.0]);
}

#[test]
fn stats_get_reads_every_field() {
    let mut state = SeriesState::new(4);
    [2.0, 4.0].iter().for_each(|v| state.insert(0, *v));
    let s = close(&mut state, 1, &[500])[0];
    let got: Vec<_> = [
        "mean", "min", "max", "count", "sum", "last", "stddev", "p50",
    ]
    .iter()
    .map(|n| s.get(Stat::parse(n).unwrap()))
    .collect();
    let sd = 2f64.sqrt();
    let want = [3.0, 2.0, 4.0, 2.0, 6.0, 4.0, sd, 2.0].map(Some);
    assert_eq!(got, want);
}

#[test]
fn memory_per_series_with_default_ring() {
    let state = SeriesState::new(DEFAULT_RING_CAPACITY);
    let total = std::mem::size_of::<SeriesState>() + state.heap_bytes();
    println!(
        "SeriesState: {} B inline + {} B heap = {total} B",
        std::mem::size_of::<SeriesState>(),
        state.heap_bytes()
    );
    // 10k series must leave room under the 12 MiB budget for everything else.
    assert!(total <= 512, "{total} B per series");
    assert_eq!(state.ring().heap_bytes(), DEFAULT_RING_CAPACITY * 8);
}

#[derive(Clone, Debug)]
enum Op {
    Insert(i64, f64),
    Close(i64),
}

fn ops(
    windows: impl Strategy<Value = i64> + Clone,
    values: impl Strategy<Value = f64>,
) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (windows.clone(), values).prop_map(|(w, v)| Op::Insert(w, v)),
        1 => windows.prop_map(Op::Close),
    ];
    proptest::collection::vec(op, 0..200)
}

/// Runs `ops` against a `SeriesState` and a plain model of open windows, checking each
/// emitted window against the model.
fn check_against_model(cap: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut state = SeriesState::new(cap);
    let mut model: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for op in ops.into_iter().chain([Op::Close(i64::MAX)]) {
        match op {
            Op::Insert(w, v) => {
                state.insert(w, v);
                model.entry(w).or_default().push(v);
            }
            Op::Close(before) => {
                let emitted = close(&mut state, before, &[0, 500, 950, 1000]);
                let keep = model.split_off(&before);
                let expected = std::mem::replace(&mut model, keep);
                prop_assert_eq!(emitted.len(), expected.len());
                for (s, (w, values)) in emitted.iter().zip(expected) {
                    check_window(s, w, values)?;
                }
            }
        }
    }
    prop_assert!(!state.has_open());
    Ok(())
}

fn check_window(s: &Stats, window: i64, mut values: Vec<f64>) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.window, window);
    prop_assert_eq!(s.count, values.len() as u64);
    prop_assert_eq!(s.min, values.iter().copied().fold(f64::INFINITY, f64::min));
    prop_assert_eq!(
        s.max,
        values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    prop_assert_eq!(s.last, *values.last().unwrap());
    values.sort_by(f64::total_cmp);
    for &(pm, q) in s.quantiles() {
        let truth = values[pm as usize * (values.len() - 1) / 1000];
        // Exact: f32-rounded truth (then clamped); sketched: within alpha (+ f32 rounding).
        let tol = if s.approximate {
            DEFAULT_ALPHA + 1e-6
        } else {
            1e-7
        };
        prop_assert!(
            (q - truth).abs() <= tol * truth.abs() + 1e-30,
            "p{} {} vs {}",
            pm,
            q,
            truth
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_readings_keep_exact_counts_and_extremes(
        cap in 1usize..40,
        base in -1_000_000i64..1_000_000,
        ops in ops(0i64..6, prop_oneof![-1e6f64..1e6, Just(0.0), -1.0f64..1.0]),
    ) {
        let ops = ops.into_iter().map(|op| match op {
            Op::Insert(w, v) => Op::Insert(base + w, v),
            Op::Close(w) => Op::Close(base + w),
        }).collect();
        check_against_model(cap, ops)?;
    }

    #[test]
    fn arbitrary_input_never_panics(
        cap in 0usize..8,
        ops in ops(any::<i64>(), any::<f64>()),
    ) {
        let mut state = SeriesState::new(cap);
        for op in ops {
            match op {
                Op::Insert(w, v) => state.insert(w, v),
                Op::Close(w) => { close(&mut state, w, &ALL); }
            }
            let _ = state.last_value();
        }
        state.close_all(&ALL, &mut |_| {});
        prop_assert!(!state.has_open());
    }
}

/// Stats of one window holding `values`.
fn stats_of(values: &[f64]) -> Stats {
    let mut state = SeriesState::new(DEFAULT_RING_CAPACITY);
    for v in values {
        state.insert(0, *v);
    }
    let out = close(&mut state, 1, &[]);
    assert_eq!(out.len(), 1);
    out[0]
}

#[test]
fn stddev_at_the_ends_of_the_f64_range() {
    // Sample variance of ±a is (a² + a²) / 1 = 2a², so stddev = √2·a (hand-computed; plain
    // Welford squares 1e300 to inf and 1e-300 to 0).
    let sqrt2 = std::f64::consts::SQRT_2;
    for a in [1e300, 1e-300, 1e150, 1e-150] {
        let s = stats_of(&[a, -a]);
        assert_close(s.stddev, sqrt2 * a, 1e-15);
        assert_eq!(s.mean, 0.0);
    }
    // Subnormal readings: the result is subnormal too, with fewer significant bits.
    assert_close(stats_of(&[3e-320, -3e-320]).stddev, sqrt2 * 3e-320, 1e-3);
    // Equal huge readings spread by nothing.
    assert_eq!(stats_of(&[1e300, 1e300, 1e300]).stddev, 0.0);
    // 1e300, 1, -1e300: deviations ≈ 1e300, 0, -1e300 -> variance 2e600 / 2 -> 1e300.
    assert_close(stats_of(&[1e300, 1.0, -1e300]).stddev, 1e300, 1e-15);
    // A tiny start, then a huge reading: mean ≈ 1e300/3, deviations -1/3, -1/3, 2/3 (·1e300):
    // variance (1 + 1 + 4)/9 / 2 = 1/3 (·1e600), stddev = 1e300/√3.
    assert_close(
        stats_of(&[1e-300, 3e-300, 1e300]).stddev,
        1e300 / 3f64.sqrt(),
        1e-15,
    );
}

#[test]
fn stddev_beyond_f64_saturates_and_an_overflowed_sum_keeps_its_mean() {
    let s = stats_of(&[f64::MAX, -f64::MAX]);
    assert_eq!(s.stddev, f64::MAX);
    assert_eq!(s.mean, 0.0);
    let s = stats_of(&[f64::MAX, f64::MAX]);
    assert_eq!((s.sum, s.mean, s.stddev), (f64::INFINITY, f64::MAX, 0.0));
    let s = stats_of(&[1e308, 1e308, 1e308, -1e308]);
    // mean 0.5e308; deviations 0.5, 0.5, 0.5, -1.5 (·1e308): variance 3/3 -> stddev 1e308.
    assert_close(s.mean, 0.5e308, 1e-15);
    assert_close(s.stddev, 1e308, 1e-15);
}

#[test]
fn stddev_of_large_offset_data_is_exact() {
    // The classic cancellation case: deviations -6, -3, 3, 6 -> variance 90 / 3 = 30.
    let s = stats_of(&[1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0]);
    assert_eq!(s.stddev, 30f64.sqrt());
}

proptest! {
    /// Scaling the readings by 2^k scales stddev and mean by exactly 2^k, all the way to
    /// the ends of the range.
    #[test]
    fn stddev_scales_exactly_with_powers_of_two(
        values in proptest::collection::vec(-1e6f64..1e6, 2..40),
        k in -900i32..900,
    ) {
        let f = 2f64.powi(k);
        let base = stats_of(&values);
        let scaled: Vec<f64> = values.iter().map(|v| v * f).collect();
        let s = stats_of(&scaled);
        prop_assert_eq!(s.stddev, base.stddev * f);
        prop_assert_eq!(s.mean, base.mean * f);
    }
}
