//! Which source topics a link mirrors: literal names, plus topics matching an include regex
//! and no exclude regex. Internal topics (`__consumer_offsets`, any name starting `__`) are
//! never mirrored: they belong to each cluster's own coordinators.

use serde::{Deserialize, Serialize};

/// A link's topic selection. Regexes match the whole name (as Kafka's `topics.regex` does).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicSelection {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub literals: Vec<String>,
}

impl TopicSelection {
    /// Compiles the regexes; the first invalid one is the error.
    pub fn compile(&self) -> Result<CompiledSelection, String> {
        let compile = |patterns: &[String]| -> Result<Vec<regex::Regex>, String> {
            patterns
                .iter()
                .map(|p| {
                    regex::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| format!("invalid topic regex '{p}': {e}"))
                })
                .collect()
        };
        Ok(CompiledSelection {
            include: compile(&self.include)?,
            exclude: compile(&self.exclude)?,
            literals: self.literals.clone(),
        })
    }
}

/// A selection ready to test names against.
#[derive(Debug, Clone)]
pub struct CompiledSelection {
    include: Vec<regex::Regex>,
    exclude: Vec<regex::Regex>,
    literals: Vec<String>,
}

impl CompiledSelection {
    pub fn selects(&self, topic: &str) -> bool {
        if topic.starts_with("__") {
            return false;
        }
        if self.literals.iter().any(|l| l == topic) {
            return true;
        }
        self.include.iter().any(|r| r.is_match(topic))
            && !self.exclude.iter().any(|r| r.is_match(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(include: &[&str], exclude: &[&str], literals: &[&str]) -> CompiledSelection {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        TopicSelection {
            include: s(include),
            exclude: s(exclude),
            literals: s(literals),
        }
        .compile()
        .expect("valid")
    }

    #[test]
    fn literals_and_regexes_select_and_excludes_win_over_includes() {
        let s = sel(&["orders\\..*"], &[".*\\.tmp"], &["payments"]);
        assert!(s.selects("orders.eu"));
        assert!(s.selects("payments"));
        assert!(!s.selects("orders.eu.tmp"));
        assert!(!s.selects("xorders.eu"), "regexes match whole names");
        assert!(!s.selects("invoices"));
    }

    #[test]
    fn internal_topics_are_never_selected() {
        let s = sel(&[".*"], &[], &["__consumer_offsets"]);
        assert!(!s.selects("__consumer_offsets"));
        assert!(s.selects("a"));
    }

    #[test]
    fn an_empty_selection_selects_nothing_and_a_bad_regex_is_an_error() {
        assert!(!sel(&[], &[], &[]).selects("a"));
        let bad = TopicSelection {
            include: vec!["(".into()],
            ..Default::default()
        };
        assert!(bad.compile().unwrap_err().contains("invalid topic regex"));
    }
}
