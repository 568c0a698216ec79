//! AlterUserScramCredentials, decided: validation as Kafka's `ScramControlManager` does it and
//! the `UserScramCredential` / `RemoveUserScramCredential` records for the users whose every
//! alteration is valid. A user's alterations apply together or not at all; other users are
//! unaffected.

use super::image::MetadataImage;
use super::records::MetadataRecord;
use crate::sasl::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use crate::sasl::{ScramCredential, ScramMechanism};

/// One alteration as the request carries it (the mechanism still a wire number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramAlteration {
    /// Kafka's clients send the salted password, never the password.
    Upsert {
        user: String,
        mechanism: i8,
        iterations: i32,
        salt: Vec<u8>,
        salted_password: Vec<u8>,
    },
    Delete {
        user: String,
        mechanism: i8,
    },
}

impl ScramAlteration {
    pub fn user(&self) -> &str {
        match self {
            ScramAlteration::Upsert { user, .. } | ScramAlteration::Delete { user, .. } => user,
        }
    }

    fn mechanism(&self) -> i8 {
        match self {
            ScramAlteration::Upsert { mechanism, .. }
            | ScramAlteration::Delete { mechanism, .. } => *mechanism,
        }
    }
}

/// Why a user's alterations were refused; `handlers::errors` maps each to Kafka's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramAlterationError {
    #[error("{0}")]
    UnacceptableCredential(String),
    #[error("Unknown SCRAM mechanism {0}")]
    UnsupportedMechanism(i8),
    #[error("A user credential cannot be altered twice in the same request")]
    Duplicate,
    #[error("Attempt to delete a user credential that does not exist")]
    NotFound,
}

/// Each user and the outcome of their alterations.
pub type UserOutcomes = Vec<(String, Result<(), ScramAlterationError>)>;

/// Each user's outcome, in the order users first appear, and the records for the valid ones.
pub fn decide_scram_credentials(
    image: &MetadataImage,
    alterations: &[ScramAlteration],
) -> (UserOutcomes, Vec<MetadataRecord>) {
    let mut users: Vec<String> = Vec::new();
    for a in alterations {
        if !users.iter().any(|u| u == a.user()) {
            users.push(a.user().to_string());
        }
    }
    let mut outcomes = Vec::new();
    let mut records = Vec::new();
    for user in users {
        let mine: Vec<&ScramAlteration> = alterations.iter().filter(|a| a.user() == user).collect();
        match decide_user(image, &user, &mine) {
            Ok(mut r) => {
                records.append(&mut r);
                outcomes.push((user, Ok(())));
            }
            Err(e) => outcomes.push((user, Err(e))),
        }
    }
    (outcomes, records)
}

fn decide_user(
    image: &MetadataImage,
    user: &str,
    mine: &[&ScramAlteration],
) -> Result<Vec<MetadataRecord>, ScramAlterationError> {
    if user.is_empty() {
        return Err(ScramAlterationError::UnacceptableCredential(
            "Username must not be empty".into(),
        ));
    }
    let mut seen = Vec::new();
    for a in mine {
        if seen.contains(&a.mechanism()) {
            return Err(ScramAlterationError::Duplicate);
        }
        seen.push(a.mechanism());
    }
    let mut records = Vec::new();
    for a in mine {
        let mechanism = ScramMechanism::from_type_id(a.mechanism())
            .ok_or(ScramAlterationError::UnsupportedMechanism(a.mechanism()))?;
        match a {
            ScramAlteration::Delete { .. } => {
                if image
                    .scram_credentials
                    .get(user)
                    .and_then(|m| m.get(&mechanism))
                    .is_none()
                {
                    return Err(ScramAlterationError::NotFound);
                }
                records.push(MetadataRecord::RemoveUserScramCredential {
                    user: user.to_string(),
                    mechanism,
                });
            }
            ScramAlteration::Upsert {
                iterations,
                salt,
                salted_password,
                ..
            } => {
                let unacceptable =
                    |m: &str| Err(ScramAlterationError::UnacceptableCredential(m.into()));
                if *iterations < MIN_ITERATIONS as i32 {
                    return unacceptable("Too few iterations");
                }
                if *iterations > MAX_ITERATIONS as i32 {
                    return unacceptable("Too many iterations");
                }
                if salt.is_empty() {
                    return unacceptable("Salt must not be empty");
                }
                if salted_password.is_empty() {
                    return unacceptable("Password must not be empty");
                }
                records.push(MetadataRecord::UserScramCredential {
                    user: user.to_string(),
                    mechanism,
                    credential: ScramCredential::from_salted_password(
                        mechanism,
                        salted_password,
                        salt,
                        *iterations as u32,
                    ),
                });
            }
        }
    }
    Ok(records)
}

/// The bootstrap credentials (`strata format --add-scram`, `sasl.scram.bootstrap.credentials.file`)
/// of users that have none for that mechanism yet: a restart, or a password changed since,
/// is never overwritten.
pub fn decide_bootstrap_credentials(
    image: &MetadataImage,
    credentials: &[(String, ScramMechanism, ScramCredential)],
) -> Vec<MetadataRecord> {
    credentials
        .iter()
        .filter(|(user, mechanism, _)| {
            image
                .scram_credentials
                .get(user)
                .and_then(|m| m.get(mechanism))
                .is_none()
        })
        .map(
            |(user, mechanism, credential)| MetadataRecord::UserScramCredential {
                user: user.clone(),
                mechanism: *mechanism,
                credential: credential.clone(),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::CredentialStore;

    fn upsert(user: &str, mechanism: i8, iterations: i32) -> ScramAlteration {
        ScramAlteration::Upsert {
            user: user.into(),
            mechanism,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: ScramMechanism::Sha256.salted_password(
                b"pw",
                b"salt",
                iterations.max(1) as u32,
            ),
        }
    }

    #[test]
    fn kafka_validation_per_user() {
        let mut image = MetadataImage::default();
        let (outcomes, records) = decide_scram_credentials(
            &image,
            &[
                upsert("alice", 1, 4096),
                upsert("bob", 1, 4095),
                upsert("carol", 1, 16385),
                upsert("dave", 3, 4096),
                upsert("erin", 1, 4096),
                upsert("erin", 1, 8192),
                upsert("", 1, 4096),
                ScramAlteration::Delete {
                    user: "frank".into(),
                    mechanism: 1,
                },
            ],
        );
        let errors: Vec<(&str, Option<ScramAlterationError>)> = outcomes
            .iter()
            .map(|(u, r)| (u.as_str(), r.clone().err()))
            .collect();
        assert_eq!(
            errors,
            vec![
                ("alice", None),
                (
                    "bob",
                    Some(ScramAlterationError::UnacceptableCredential(
                        "Too few iterations".into()
                    ))
                ),
                (
                    "carol",
                    Some(ScramAlterationError::UnacceptableCredential(
                        "Too many iterations".into()
                    ))
                ),
                ("dave", Some(ScramAlterationError::UnsupportedMechanism(3))),
                ("erin", Some(ScramAlterationError::Duplicate)),
                (
                    "",
                    Some(ScramAlterationError::UnacceptableCredential(
                        "Username must not be empty".into()
                    ))
                ),
                ("frank", Some(ScramAlterationError::NotFound)),
            ]
        );
        assert_eq!(records.len(), 1);
        for r in &records {
            image.apply(1, r);
        }
        let c = image
            .scram_credential("alice", ScramMechanism::Sha256)
            .expect("stored");
        assert!(c.verifies(ScramMechanism::Sha256, b"pw"));
        assert_eq!(c.iterations, 4096);
        // The record holds the derived keys, not the password.
        let json = serde_json::to_string(&records[0]).unwrap();
        assert!(!json.contains("\"pw\""));
        // Upsert one mechanism and delete the other together; delete the last one.
        let (outcomes, records) = decide_scram_credentials(
            &image,
            &[
                upsert("alice", 2, 4096),
                ScramAlteration::Delete {
                    user: "alice".into(),
                    mechanism: 1,
                },
            ],
        );
        assert!(outcomes[0].1.is_ok());
        for r in &records {
            image.apply(2, r);
        }
        assert!(image
            .scram_credential("alice", ScramMechanism::Sha256)
            .is_none());
        assert!(image
            .scram_credential("alice", ScramMechanism::Sha512)
            .is_some());
        let (_, records) = decide_scram_credentials(
            &image,
            &[ScramAlteration::Delete {
                user: "alice".into(),
                mechanism: 2,
            }],
        );
        for r in &records {
            image.apply(3, r);
        }
        assert!(image.scram_credentials.is_empty());
        // Bootstrap adds only what is missing, and never replaces a credential.
        let c = ScramCredential::from_password(ScramMechanism::Sha512, b"boot", b"s", 4096);
        let (_, records) = decide_scram_credentials(&image, &[upsert("alice", 2, 4096)]);
        for r in &records {
            image.apply(4, r);
        }
        let boot = [
            ("alice".to_string(), ScramMechanism::Sha512, c.clone()),
            ("root".to_string(), ScramMechanism::Sha512, c),
        ];
        let records = decide_bootstrap_credentials(&image, &boot);
        assert_eq!(records.len(), 1);
        assert!(
            matches!(&records[0], MetadataRecord::UserScramCredential { user, .. } if user == "root")
        );
        for r in &records {
            image.apply(4, r);
        }
        assert!(decide_bootstrap_credentials(&image, &boot).is_empty());
        // The image round-trips through its snapshot encoding.
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<MetadataImage>(&json).unwrap(), image);
    }
}
