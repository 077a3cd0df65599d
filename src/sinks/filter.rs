//! An output's `filter` applied to spooled line protocol: which lines (points) one output
//! receives. The spool holds every point once; each output's uplink drops the lines its
//! filter refuses when it plans a request, so filtering costs nothing on disk.

use crate::config::OutputFilter;
use crate::line_protocol::parse_line;

/// Decides per line whether an output receives it; `None` filter keeps everything.
#[derive(Debug, Clone, Default)]
pub struct LineFilter(Option<OutputFilter>);

impl LineFilter {
    pub fn new(filter: Option<OutputFilter>) -> LineFilter {
        LineFilter(filter)
    }

    /// True when the output receives `line`. A line that does not parse is kept: the store
    /// refuses it and the dead-letter path records it, as without a filter.
    pub fn keeps(&self, line: &[u8]) -> bool {
        let Some(f) = &self.0 else {
            return true;
        };
        let Some(p) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| parse_line(l).ok())
        else {
            return true;
        };
        let tag = |k: &str| {
            let found = p.tags.iter().find(|(key, _)| key == k);
            found.map(|(_, v)| v.as_str())
        };
        f.matches(&p.measurement, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(measurements: &[&str], tags: &[(&str, &str)]) -> LineFilter {
        LineFilter::new(Some(OutputFilter {
            measurements: measurements.iter().map(|m| m.to_string()).collect(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }))
    }

    #[test]
    fn keeps_by_measurement_and_tags() {
        let aq = b"air_quality,gateway=gw,site=centrum pm2_5_mean=3 1\n";
        let other = b"footfall,gateway=gw,site=centrum in=3i 1\n";
        assert!(LineFilter::default().keeps(other));
        let f = filter(&["air_quality"], &[]);
        assert!(f.keeps(aq) && !f.keeps(other));
        let f = filter(&[], &[("site", "centrum")]);
        assert!(f.keeps(aq) && f.keeps(other));
        let f = filter(&["air_quality"], &[("site", "noord")]);
        assert!(!f.keeps(aq));
        // Escapes are read as the store reads them.
        let esc = b"air\\ quality,site=a\\ b v=1 1\n";
        assert!(filter(&["air quality"], &[("site", "a b")]).keeps(esc));
    }

    #[test]
    fn unparsable_lines_are_kept() {
        let f = filter(&["air_quality"], &[]);
        assert!(f.keeps(b"\xff\xfe garbage"));
        assert!(f.keeps(b"no_fields_here 1\n"));
    }
}
