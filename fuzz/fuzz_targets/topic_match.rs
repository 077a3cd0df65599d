//! Topic patterns: parsing, the MQTT filter they subscribe with, and matching topics.
//! Property: a pattern captures a topic exactly when its filter matches it under MQTT's rules
//! (for topics not starting with `$`, which wildcards never match).
//!
//! Input: `pattern \0 topic`.
#![no_main]

use citysense::sources::mqtt::TopicPattern;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (pattern, topic) = common::split_at_byte(data, 0);
    let (Ok(pattern), Ok(topic)) = (std::str::from_utf8(pattern), std::str::from_utf8(topic))
    else {
        return;
    };
    let Ok(p) = TopicPattern::parse(pattern) else {
        return;
    };
    let filter = p.filter();
    assert_eq!(p.to_string(), filter);
    let _ = p.tag_names().count();
    let caps = p.captures(topic);
    if !topic.starts_with('$') {
        assert_eq!(
            caps.is_some(),
            mqtt_matches(&filter, topic),
            "pattern {pattern:?} filter {filter:?} topic {topic:?}"
        );
    }
});

/// MQTT 3.1.1 section 4.7 filter matching: `+` one level, a trailing `#` the parent level
/// and any number of levels below.
fn mqtt_matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match t.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}
