//! Calibration of a close's windows ([`crate::domain::calibration`]), in place, before they
//! are encoded: the statistics, the humidity correction, the indices and the hourly values
//! then all see calibrated values. RH for a `linear_rh` rule is the window-mean humidity of the
//! same point, else of a point at the same `site` in the same window.

use std::sync::atomic::Ordering::Relaxed;

use super::close::Closed;
use super::Aggregator;
use crate::domain::calibration::{self, WindowStats};
use crate::reading::QuantityKind;

impl Aggregator {
    /// Calibrates `closed` (sorted by window, then point) and their values in `values`.
    pub(super) fn calibrate(&self, closed: &mut [Closed], values: &mut [f64]) {
        let rules = &self.derive.calibration;
        if rules.is_empty() {
            return;
        }
        let n = self.stats.len();
        for same_window in closed.chunk_by_mut(|a, b| a.window == b.window) {
            let rh: Vec<(u32, Option<&str>, f64)> = (same_window.iter())
                .filter_map(|c| {
                    let slot = self.slots.get(c.slot as usize)?.as_ref()?;
                    let humidity = slot.info.quantity.as_ref() == "humidity"
                        && slot.info.kind.kind == QuantityKind::Gauge;
                    let site = slot.info.group_key.tag("site");
                    (humidity && c.mean.is_finite()).then_some((c.group, site, c.mean))
                })
                .collect();
            for c in same_window.iter_mut() {
                let Some(slot) = self.slots.get(c.slot as usize).and_then(Option::as_ref) else {
                    continue;
                };
                let (key, quantity) = (&slot.info.group_key, &slot.info.quantity);
                if slot.info.kind.kind != QuantityKind::Gauge {
                    continue;
                }
                let start = c.window.saturating_mul(self.window_ns);
                let Some((i, rule)) = calibration::find(rules, key, quantity, start) else {
                    continue;
                };
                let site = key.tag("site");
                let same_point = rh.iter().find(|(g, _, _)| *g == c.group);
                let same_site = || rh.iter().find(|(_, s, _)| site.is_some() && *s == site);
                let rh = same_point.or_else(same_site).map(|(_, _, m)| *m);
                let raw = c.mean;
                let Some(values) = values.get_mut(c.first..c.first + n) else {
                    continue;
                };
                let w = WindowStats {
                    stats: &self.stats,
                    values,
                    mean: &mut c.mean,
                    sum: &mut c.sum,
                    count: c.count,
                };
                if calibration::apply_to(rule, w, rh) {
                    c.raw_mean = raw;
                    c.calibration = u16::try_from(i).ok();
                } else {
                    (self.metrics.domain.calibration_no_rh).fetch_add(1, Relaxed);
                }
            }
        }
    }
}
