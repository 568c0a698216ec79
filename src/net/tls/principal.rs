//! `ssl.principal.mapping.rules`: Kafka's `SslPrincipalMapper`. A client certificate's subject
//! DN (RFC 2253, see [`super::dn`]) becomes a principal name by the first rule whose pattern
//! matches the whole DN:
//!
//! - `RULE:pattern/replacement/` rewrites it (`$1` names a group; `\/` is a literal slash),
//!   `RULE:pattern/replacement/L` lower-cases and `.../U` upper-cases the result;
//! - `DEFAULT` keeps the DN as it is.
//!
//! Rules are comma-separated (commas inside a pattern or replacement belong to it). A DN that no
//! rule matches has no principal: the connection is refused, as in Kafka.

use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalMappingError {
    #[error("invalid ssl.principal.mapping.rules at '{at}': {reason}")]
    Invalid { at: String, reason: String },
    #[error("no ssl.principal.mapping.rules rule matches '{dn}'")]
    NoMatch { dn: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    Upper,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Rewrite {
        /// The pattern anchored at both ends: Kafka applies a rule only to a whole match.
        whole: Regex,
        pattern: Regex,
        replacement: String,
        case: Option<Case>,
    },
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

/// Reads up to the next unescaped `/`; returns (text with `\/` kept, rest after the slash).
fn until_slash(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'/' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// Java's replacement syntax in Rust's: `$1` as `${1}` (so `$1abc` stays group 1 then "abc"),
/// `\x` as a literal x, and a literal `$` escaped.
fn replacement(java: &str) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

impl PrincipalMapper {
    pub fn parse(rules: &str) -> Result<PrincipalMapper, PrincipalMappingError> {
        let mut out = Vec::new();
        let mut rest = rules.trim_start();
        let invalid = |at: &str, reason: &str| PrincipalMappingError::Invalid {
            at: at.chars().take(40).collect(),
            reason: reason.into(),
        };
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                out.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .ok_or_else(|| invalid(rest, "expected RULE:pattern/replacement/[LU]"))?;
                let (repl, after) = until_slash(after)
                    .ok_or_else(|| invalid(rest, "expected RULE:pattern/replacement/[LU]"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Some(Case::Lower), &after[1..]),
                    Some('U') => (Some(Case::Upper), &after[1..]),
                    _ => (None, after),
                };
                let compile = |p: &str| Regex::new(p).map_err(|e| invalid(pattern, &e.to_string()));
                out.push(Rule::Rewrite {
                    whole: compile(&format!("^(?:{pattern})$"))?,
                    pattern: compile(pattern)?,
                    replacement: replacement(repl),
                    case,
                });
                rest = after;
            } else {
                return Err(invalid(rest, "expected DEFAULT or RULE:"));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(invalid(rest, "expected a comma between rules")),
            }
        }
        if out.is_empty() {
            return Err(invalid(rules, "no rule"));
        }
        Ok(PrincipalMapper { rules: out })
    }

    /// The principal name of `dn`, by the first rule that applies.
    pub fn map(&self, dn: &str) -> Result<String, PrincipalMappingError> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(dn.to_string()),
                Rule::Rewrite {
                    whole,
                    pattern,
                    replacement,
                    case,
                } => {
                    if !whole.is_match(dn) {
                        continue;
                    }
                    let name = pattern.replace_all(dn, replacement.as_str()).into_owned();
                    return Ok(match case {
                        Some(Case::Lower) => name.to_lowercase(),
                        Some(Case::Upper) => name.to_uppercase(),
                        None => name,
                    });
                }
            }
        }
        Err(PrincipalMappingError::NoMatch { dn: dn.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rules: &str, dn: &str) -> Result<String, PrincipalMappingError> {
        PrincipalMapper::parse(rules).expect("rules parse").map(dn)
    }

    // Cases from Kafka's SslPrincipalMapperTest.
    #[test]
    fn kafka_rules_map_as_kafka_does() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT";
        let m = PrincipalMapper::parse(rules).expect("parse");
        assert_eq!(
            m.map("CN=Duke,OU=ServiceUsers,O=Org,C=US").expect("map"),
            "Duke"
        );
        assert_eq!(
            m.map("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US")
                .expect("map"),
            "duke@sme"
        );
        assert_eq!(m.map("cn=duke,ou=sme,dc=mycp,dc=com").expect("map"), "duke");
        assert_eq!(
            m.map("cN=Duke,OU=JavaSoft,O=Sun Microsystems")
                .expect("map"),
            "duke"
        );
        assert_eq!(
            m.map("OU=JavaSoft,O=Sun Microsystems,C=US").expect("map"),
            "OU=JavaSoft,O=Sun Microsystems,C=US"
        );
        assert_eq!(
            map("RULE:^CN=(.*),OU=.*$/$1/U", "CN=duke,OU=x").expect("map"),
            "DUKE"
        );
        assert_eq!(map("DEFAULT", "CN=a,O=b").expect("map"), "CN=a,O=b");
        // Escaped slashes, and a group followed by letters.
        assert_eq!(
            map("RULE:^CN=(.*)\\/x$/$1x\\/y/", "CN=a/x").expect("map"),
            "ax/y"
        );
    }

    #[test]
    fn no_match_and_bad_rules_are_errors() {
        assert_eq!(
            map("RULE:^CN=(.*)$/$1/", "O=x"),
            Err(PrincipalMappingError::NoMatch { dn: "O=x".into() })
        );
        for bad in [
            "",
            "DEFAULTS",
            "RULE:abc",
            "RULE:^(.*$/$1/",
            "RULE:a/b/L,junk",
            "DEFAULT DEFAULT",
        ] {
            assert!(
                PrincipalMapper::parse(bad).is_err(),
                "{bad:?} must not parse"
            );
        }
    }
}
