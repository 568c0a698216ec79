//! Credentials created at first start (`strata format --add-scram`,
//! `sasl.scram.bootstrap.credentials.file`), in `kafka-storage format --add-scram`'s syntax.

use super::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use super::{ScramCredential, ScramMechanism};

/// A credential to create at first start: `MECHANISM=[name=USER,password=PASSWORD]` with an
/// optional `iterations=N` (default 4096), as `kafka-storage format --add-scram` takes it.
/// Values may be double-quoted to hold commas or `]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapCredential {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub password: String,
    pub iterations: u32,
}

impl BootstrapCredential {
    pub fn parse(spec: &str) -> Result<BootstrapCredential, String> {
        let spec = spec.trim();
        let (mechanism, rest) = spec
            .split_once('=')
            .ok_or("expected MECHANISM=[name=...,password=...]")?;
        let mechanism = ScramMechanism::parse(mechanism.trim()).ok_or_else(|| {
            format!("unknown SCRAM mechanism {mechanism:?}: SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
        let body = rest
            .trim()
            .strip_prefix('[')
            .and_then(|b| b.strip_suffix(']'))
            .ok_or("the attributes go in brackets: [name=...,password=...]")?;
        let (mut user, mut password, mut iterations) = (None, None, MIN_ITERATIONS);
        let mut rest = body;
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once('=')
                .ok_or_else(|| format!("expected key=value in {rest:?}"))?;
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"').ok_or("unterminated quote")?;
                (
                    &quoted[..end],
                    quoted[end + 1..]
                        .strip_prefix(',')
                        .unwrap_or(&quoted[end + 1..]),
                )
            } else {
                after.split_once(',').unwrap_or((after, ""))
            };
            match key.trim() {
                "name" => user = Some(value.to_string()),
                "password" => password = Some(value.to_string()),
                "iterations" => {
                    iterations = value
                        .parse()
                        .map_err(|_| format!("iterations {value:?} is not a number"))?;
                    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                        return Err(format!(
                            "iterations must be within {MIN_ITERATIONS}..={MAX_ITERATIONS}"
                        ));
                    }
                }
                other => {
                    return Err(format!(
                        "unknown attribute {other:?} (name, password, iterations)"
                    ))
                }
            }
            rest = after;
        }
        let user = user.filter(|u| !u.is_empty()).ok_or("name is missing")?;
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or("password is missing")?;
        Ok(BootstrapCredential {
            user,
            mechanism,
            password,
            iterations,
        })
    }

    /// The stored form, under a fresh salt.
    pub fn credential(&self) -> ScramCredential {
        let salt = ScramCredential::random_salt(self.mechanism);
        ScramCredential::from_password(
            self.mechanism,
            self.password.as_bytes(),
            &salt,
            self.iterations,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_specs_parse_like_kafka_storage_format() {
        let c = BootstrapCredential::parse("SCRAM-SHA-256=[name=admin,password=s3cret]").unwrap();
        assert_eq!(
            (
                c.user.as_str(),
                c.mechanism,
                c.password.as_str(),
                c.iterations
            ),
            ("admin", ScramMechanism::Sha256, "s3cret", 4096)
        );
        let c = BootstrapCredential::parse(
            r#"SCRAM-SHA-512=[name=a,password="x,y]z",iterations=8192]"#,
        )
        .unwrap();
        assert_eq!((c.password.as_str(), c.iterations), ("x,y]z", 8192));
        assert!(c.credential().verifies(ScramMechanism::Sha512, b"x,y]z"));
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=[name=a,password=b,salt=x]",
        ] {
            assert!(BootstrapCredential::parse(bad).is_err(), "{bad}");
        }
    }
}
