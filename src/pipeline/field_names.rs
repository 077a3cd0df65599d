//! Field names of gauge series (`<quantity>_<stat>`), built once per quantity and shared by
//! every series of that quantity.
//!
//! Why: 10k series of a handful of quantities would otherwise own 10k copies of the same
//! nine strings (one heap `String` per stat per series, about 340 bytes a series with the
//! `Vec`). Shared, a series holds one `Arc` (16 bytes) and the table holds one list per
//! quantity. The table only grows with distinct quantity names, which the registry's series
//! limit bounds.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Stat;

/// The field names of one series, in the aggregator's stat order; empty for counters.
pub type FieldKeys = Arc<[Box<str>]>;

/// Interned field-name lists by quantity.
#[derive(Debug)]
pub struct FieldNames {
    by_quantity: HashMap<Arc<str>, FieldKeys>,
    none: FieldKeys,
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames {
            by_quantity: HashMap::new(),
            none: Arc::from(Vec::new()),
        }
    }
}

impl FieldNames {
    /// The names `<quantity>_<suffix>` for `stats`, shared with earlier calls for `quantity`.
    pub fn gauge(&mut self, quantity: &Arc<str>, stats: &[Stat]) -> FieldKeys {
        if let Some(keys) = self.by_quantity.get(quantity) {
            return keys.clone();
        }
        let keys: FieldKeys = stats
            .iter()
            .map(|s| format!("{quantity}_{}", s.field_suffix()).into_boxed_str())
            .collect();
        self.by_quantity.insert(quantity.clone(), keys.clone());
        keys
    }

    /// The empty list (counter series get no statistics fields).
    pub fn none(&self) -> FieldKeys {
        self.none.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_per_quantity_shared_between_series() {
        let mut names = FieldNames::default();
        let stats = [Stat::Mean, Stat::Quantile(950), Stat::Count];
        let pm: Arc<str> = Arc::from("pm2_5");
        let a = names.gauge(&pm, &stats);
        // Another series' own `Arc<str>` of the same quantity finds the same list.
        let b = names.gauge(&Arc::from("pm2_5"), &stats);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            &*a,
            ["pm2_5_mean", "pm2_5_p95", "pm2_5_count"].map(Box::from)
        );
        let t = names.gauge(&Arc::from("temperature"), &stats);
        assert_eq!(&*t[0], "temperature_mean");
        assert!(names.none().is_empty());
    }
}
