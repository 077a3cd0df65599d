//! `topic` patterns: `sensors/{site}/{sensor}/{quantity}` -> the MQTT filter `sensors/+/+/+`
//! and, per received topic, the captured tag values and quantity. The parsed pattern is what
//! the config check validates and what the MQTT source matches with: one parser for both.

use std::fmt;

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `{name}`: one level, captured as tag `name` (`quantity` names the quantity).
    Capture(String),
    /// `+` or `{_}`: one level, ignored.
    Any,
    /// Trailing `#`: any number of levels.
    Rest,
}

/// A parsed subscription topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<Level>,
}

/// What a pattern captured from one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Captures<'p, 't> {
    pub quantity: Option<&'t str>,
    /// (tag name from the pattern, value from the topic)
    pub tags: Vec<(&'p str, &'t str)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic pattern is empty")]
    Empty,
    #[error("`#` may only be the last level")]
    HashNotLast,
    #[error("level {0:?}: wildcards must fill a whole level")]
    PartialWildcard(String),
    #[error("capture {0:?} appears twice")]
    DuplicateCapture(String),
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<TopicPattern, TopicError> {
        if pattern.is_empty() {
            return Err(TopicError::Empty);
        }
        let parts: Vec<&str> = pattern.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err(TopicError::HashNotLast),
                "+" | "{_}" => Level::Any,
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                    let name = &p[1..p.len() - 1];
                    if names.contains(&name) {
                        return Err(TopicError::DuplicateCapture(name.into()));
                    }
                    names.push(name);
                    Level::Capture(name.to_string())
                }
                p if p.contains(['+', '#', '{', '}']) => {
                    return Err(TopicError::PartialWildcard(p.to_string()))
                }
                p => Level::Literal(p.to_string()),
            };
            levels.push(level);
        }
        Ok(TopicPattern { levels })
    }

    /// The MQTT subscription filter.
    pub fn filter(&self) -> String {
        let mut out = String::new();
        for (i, l) in self.levels.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            match l {
                Level::Literal(s) => out.push_str(s),
                Level::Capture(_) | Level::Any => out.push('+'),
                Level::Rest => out.push('#'),
            }
        }
        out
    }

    /// Captures from `topic`, or `None` if it does not match.
    pub fn captures<'p, 't>(&'p self, topic: &'t str) -> Option<Captures<'p, 't>> {
        let mut caps = Captures::default();
        let mut parts = topic.split('/');
        for level in &self.levels {
            if *level == Level::Rest {
                return Some(caps);
            }
            let part = parts.next()?;
            match level {
                Level::Literal(s) if s != part => return None,
                Level::Capture(name) if name == "quantity" => caps.quantity = Some(part),
                Level::Capture(name) => caps.tags.push((name.as_str(), part)),
                _ => {}
            }
        }
        parts.next().is_none().then_some(caps)
    }

    /// Capture names in order (excluding `quantity`).
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            Level::Capture(n) if n != "quantity" => Some(n.as_str()),
            _ => None,
        })
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.filter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_captures() {
        let p = TopicPattern::parse("sensors/{site}/{sensor}/{quantity}").unwrap();
        assert_eq!(p.filter(), "sensors/+/+/+");
        let c = p.captures("sensors/neude/sds-1/pm2_5").unwrap();
        assert_eq!(c.quantity, Some("pm2_5"));
        assert_eq!(c.tags, vec![("site", "neude"), ("sensor", "sds-1")]);
        assert!(p.captures("sensors/neude/sds-1").is_none());
        assert!(p.captures("sensors/neude/sds-1/pm2_5/extra").is_none());
        assert!(p.captures("other/neude/sds-1/pm2_5").is_none());
        assert_eq!(p.tag_names().collect::<Vec<_>>(), vec!["site", "sensor"]);
    }

    #[test]
    fn wildcards() {
        let p = TopicPattern::parse("tele/{_}/+/#").unwrap();
        assert_eq!(p.filter(), "tele/+/+/#");
        assert!(p.captures("tele/a/b").is_some());
        assert!(p.captures("tele/a/b/c/d").is_some());
        assert!(p.captures("tele/a").is_none());
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(TopicPattern::parse(""), Err(TopicError::Empty));
        assert_eq!(TopicPattern::parse("a/#/b"), Err(TopicError::HashNotLast));
        assert!(matches!(
            TopicPattern::parse("a/x+/b"),
            Err(TopicError::PartialWildcard(_))
        ));
        assert!(matches!(
            TopicPattern::parse("{a}/{a}"),
            Err(TopicError::DuplicateCapture(_))
        ));
    }
}
