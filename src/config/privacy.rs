//! `[privacy]`: settings of the device-identifier path (`crate::privacy`).

use serde::Deserialize;

/// `[privacy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Smallest `unique_devices` estimate that is written; smaller ones are omitted (and
    /// counted), so a window never singles out a handful of people. Default: 5.
    #[serde(default = "default_k_min")]
    pub k_min: u32,
}

const fn default_k_min() -> u32 {
    5
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            k_min: default_k_min(),
        }
    }
}

impl PrivacyConfig {
    pub(super) fn check(&self, errs: &mut Vec<(String, String)>) {
        if self.k_min < 2 {
            errs.push((
                "privacy.k_min".into(),
                "must be at least 2 (1 would publish single devices)".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_min_must_be_at_least_two() {
        let mut errs = Vec::new();
        PrivacyConfig { k_min: 1 }.check(&mut errs);
        assert_eq!(errs[0].0, "privacy.k_min");
        let mut errs = Vec::new();
        PrivacyConfig::default().check(&mut errs);
        assert!(errs.is_empty());
    }
}
