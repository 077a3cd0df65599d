//! Describing metrics to `prometheus-client` at scrape time: each component's `encode` reads
//! its atomics and hands the values to the library, which writes the OpenMetrics text
//! (names, `_total` on counters, label escaping, histograms). Counter names are given
//! without `_total`: the encoder appends it.

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

pub use prometheus_client::encoding::DescriptorEncoder as Encoder;

/// What every `encode` returns.
pub type Encoded = Result<(), std::fmt::Error>;

/// An unlabelled counter.
pub fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Encoded {
    let m = ConstCounter::new(v);
    m.encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// An unlabelled gauge.
pub fn gauge<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> Encoded {
    let m = ConstGauge::new(v);
    m.encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A labelled counter family: one sample per row.
pub fn counters<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Encoded {
    let mut d = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A labelled gauge family: one sample per row.
pub fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> Encoded {
    let mut d = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A labelled histogram family.
pub fn histograms<'h, L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, &'h Histogram)>,
) -> Encoded {
    let mut d = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        h.encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

/// An unlabelled histogram.
pub fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> Encoded {
    h.encode(e.encode_descriptor(name, help, None, MetricType::Histogram)?)
}
