use super::*;
use crate::config::AggregationConfig;

const S: i64 = crate::reading::NANOS_PER_SEC;
const T0: i64 = 1_800_000_000 * S;

fn hub() -> Privacy {
    let agg = AggregationConfig {
        window_secs: 60,
        future_tolerance_secs: 300,
        ..AggregationConfig::default()
    };
    Privacy::new(&PrivacyConfig::default(), &agg, Default::default())
}

fn updates(h: &Privacy, ts: i64) -> Vec<Update> {
    (0..200u32)
        .map(|i| h.register(format!("{i:012x}").as_bytes(), ts, ts).unwrap())
        .collect()
}

#[test]
fn same_identifier_same_window_same_update_new_window_new_key() {
    let h = hub();
    let a = updates(&h, T0);
    assert_eq!(a, updates(&h, T0 + 59 * S), "one key per window");
    let b = updates(&h, T0 + 60 * S);
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    // Independent keys: an identifier lands in the same register with the same rank in the
    // next window only by chance (about 1 in 4096 * 2).
    assert!(same <= 2, "{same} of 200 updates survived the key change");
    let c = updates(&hub(), T0);
    assert_ne!(a, c, "keys are random per process, not fixed");
}

#[test]
fn future_and_closed_windows_are_refused_and_counted() {
    let h = hub();
    assert_eq!(
        h.register(b"aabbcc001122", T0 + 301 * S, T0),
        Err(Refused::Future)
    );
    assert!(h.register(b"aabbcc001122", T0 + 299 * S, T0).is_ok());
    h.retire_before(T0 / (60 * S) + 1);
    assert_eq!(h.register(b"aabbcc001122", T0, T0), Err(Refused::Late));
    assert_eq!(h.live_keys(), 1, "only the future window's key is left");
    assert_eq!(h.metrics().identifiers.load(Relaxed), 1);
    assert_eq!(h.metrics().identifiers_refused.load(Relaxed), 2);
}
