//! `[aggregation]`: how readings become windows, and the statistics vocabulary ([`Stat`])
//! that both the checks and the aggregator read.

use std::borrow::Cow;

use serde::Deserialize;

/// Most quantiles a window reports; `validate` refuses more.
pub const MAX_QUANTILES: usize = 8;

/// `[aggregation]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationConfig {
    /// Window length in seconds; windows are aligned to the epoch (60 -> every minute at :00).
    /// Default: 60.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// How long after a window's end readings for it are still accepted. Default: 5.
    #[serde(default = "default_grace_secs")]
    pub grace_secs: u64,
    /// A window is emitted this long after its end (at most `grace_secs`); readings arriving
    /// later within grace re-emit it corrected, with the same timestamp. Default: 1.
    #[serde(default = "default_close_delay_secs")]
    pub close_delay_secs: u64,
    /// Statistics per quantity: mean, min, max, count, sum, last, stddev, p50, p95, p99, p999.
    /// Default: mean, min, max, count, last, stddev, p50, p95.
    #[serde(default = "default_stats")]
    pub stats: Vec<String>,
    /// Samples kept per series for exact percentiles; a busy series past this switches to a
    /// 1%-relative-error sketch. Default: 32.
    #[serde(default = "default_ring_capacity")]
    pub ring_capacity: usize,
    /// Series beyond this are dropped and counted (protects memory from topic floods).
    /// Default: 100000.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Readings queued between sources and the aggregator. Default: 65536.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Readings with an event time this far in the future are rejected. Default: 300.
    #[serde(default = "default_future_tolerance_secs")]
    pub future_tolerance_secs: u64,
}

const fn default_window_secs() -> u64 {
    60
}
const fn default_grace_secs() -> u64 {
    5
}
const fn default_close_delay_secs() -> u64 {
    1
}
fn default_stats() -> Vec<String> {
    [
        "mean", "min", "max", "count", "last", "stddev", "p50", "p95",
    ]
    .map(String::from)
    .to_vec()
}
const fn default_ring_capacity() -> usize {
    32
}
const fn default_max_series() -> usize {
    100_000
}
const fn default_queue_capacity() -> usize {
    65_536
}
const fn default_future_tolerance_secs() -> u64 {
    300
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            window_secs: default_window_secs(),
            grace_secs: default_grace_secs(),
            close_delay_secs: default_close_delay_secs(),
            stats: default_stats(),
            ring_capacity: default_ring_capacity(),
            max_series: default_max_series(),
            queue_capacity: default_queue_capacity(),
            future_tolerance_secs: default_future_tolerance_secs(),
        }
    }
}

impl AggregationConfig {
    /// Semantic checks, as (key path, message).
    pub(super) fn check(&self, errs: &mut Vec<(String, String)>) {
        let agg = self;
        if agg.window_secs == 0 || agg.window_secs > 86_400 {
            errs.push((
                "aggregation.window_secs".into(),
                "must be between 1 and 86400".into(),
            ));
        }
        if agg.grace_secs > agg.window_secs.saturating_mul(10) {
            errs.push((
                "aggregation.grace_secs".into(),
                "must not exceed 10 windows".into(),
            ));
        }
        for s in &agg.stats {
            if Stat::parse(s).is_none() {
                errs.push((
                "aggregation.stats".into(),
                format!("unknown statistic {s:?} (mean, min, max, count, sum, last, stddev, p50, p95, p99, p999)"),
            ));
            }
        }
        let quantiles = agg.stats.iter().filter(|s| s.starts_with('p')).count();
        if quantiles > MAX_QUANTILES {
            errs.push((
                "aggregation.stats".into(),
                format!("at most {} percentiles", MAX_QUANTILES),
            ));
        }
        if agg.stats.is_empty() {
            errs.push(("aggregation.stats".into(), "must name at least one".into()));
        }
        if agg.ring_capacity < 2 || agg.ring_capacity > 65_536 {
            errs.push((
                "aggregation.ring_capacity".into(),
                "must be between 2 and 65536".into(),
            ));
        }
        if agg.queue_capacity == 0 {
            errs.push(("aggregation.queue_capacity".into(), "must be > 0".into()));
        }
    }
}

/// A statistic a window can report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    Mean,
    Min,
    Max,
    Count,
    Sum,
    Last,
    Stddev,
    /// Quantile in per-mille: 950 = p95, 999 = p99.9.
    Quantile(u16),
}

impl Stat {
    /// Parses a stat name: `mean`, `min`, `max`, `count`, `sum`, `last`, `stddev` (or `stdev`),
    /// or a percentile `p<digits>`: one or two digits are a percent (`p5`, `p50`, `p95`), three
    /// digits are per-mille (`p999` = 99.9 %, `p995`), and `p100` is the maximum rank.
    pub fn parse(name: &str) -> Option<Stat> {
        Some(match name {
            "mean" => Stat::Mean,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "count" => Stat::Count,
            "sum" => Stat::Sum,
            "last" => Stat::Last,
            "stddev" | "stdev" => Stat::Stddev,
            _ => Stat::Quantile(parse_percentile(name.strip_prefix('p')?)?),
        })
    }

    /// The field name suffix (`<quantity>_<suffix>`): the config name (`mean`, `stddev`, ...;
    /// Telegraf basicstats spells the last `stdev`) and `p<percentile>` for quantiles (`p95`,
    /// `p999`). It parses back to the same stat.
    pub fn field_suffix(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Stat::Mean => "mean",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Count => "count",
            Stat::Sum => "sum",
            Stat::Last => "last",
            Stat::Stddev => "stddev",
            Stat::Quantile(500) => "p50",
            Stat::Quantile(950) => "p95",
            Stat::Quantile(990) => "p99",
            Stat::Quantile(999) => "p999",
            Stat::Quantile(1000) => "p100",
            Stat::Quantile(pm) if pm % 10 == 0 => return Cow::Owned(format!("p{}", pm / 10)),
            Stat::Quantile(pm) => return Cow::Owned(format!("p{pm:03}")),
        })
    }
}

fn parse_percentile(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u16 = digits.parse().ok()?;
    Some(match digits.len() {
        1 | 2 => n * 10,
        _ if n == 100 => 1000,
        _ => n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_round_trip() {
        for name in [
            "mean", "min", "max", "count", "sum", "last", "stddev", "p50", "p95", "p99", "p999",
        ] {
            let stat = Stat::parse(name).unwrap();
            assert_eq!(stat.field_suffix(), name);
        }
        assert_eq!(Stat::parse("stdev"), Some(Stat::Stddev));
        assert_eq!(Stat::parse("p999"), Some(Stat::Quantile(999)));
        assert_eq!(Stat::parse("p95"), Some(Stat::Quantile(950)));
        assert_eq!(Stat::parse("p5"), Some(Stat::Quantile(50)));
        assert_eq!(Stat::parse("p100"), Some(Stat::Quantile(1000)));
        for bad in [
            "", "p", "p1000", "p9999", "p-5", "p+5", "P95", "median", "p95 ",
        ] {
            assert_eq!(Stat::parse(bad), None, "{bad}");
        }
        for pm in 0..=1000 {
            let suffix = Stat::Quantile(pm).field_suffix();
            assert_eq!(Stat::parse(&suffix), Some(Stat::Quantile(pm)), "{suffix}");
        }
    }
}
