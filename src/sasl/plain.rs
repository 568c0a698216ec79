//! PLAIN (RFC 4616): one message `[authzid] NUL authcid NUL passwd`, checked against the
//! user's SCRAM credential (SHA-512 first, then SHA-256) by recomputing the salted password
//! with the stored salt and iterations. There is no separate PLAIN password store.

use super::{CredentialStore, SaslError, SaslStep, ScramMechanism};

/// The client's message.
pub fn client_message(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

fn malformed(reason: &str) -> SaslError {
    SaslError::Malformed {
        mechanism: "PLAIN",
        reason: reason.into(),
    }
}

pub fn authenticate(token: &[u8], store: &dyn CredentialStore) -> Result<SaslStep, SaslError> {
    let text = std::str::from_utf8(token).map_err(|_| malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "expected authzid, authcid and password separated by NUL",
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(malformed("empty user name or password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::AuthenticationFailed(
            "Client requested an authorization id that is different from username".into(),
        ));
    }
    let verified = [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|m| {
            store
                .scram_credential(user, m)
                .map(|c| c.verifies(m, password.as_bytes()))
        })
        .unwrap_or(false);
    if !verified {
        return Err(SaslError::AuthenticationFailed(
            "Invalid username or password".into(),
        ));
    }
    Ok(SaslStep::Complete {
        token: Vec::new(),
        principal: user.to_string(),
        credential_expires_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::ScramCredential;

    struct One(ScramMechanism, ScramCredential);
    impl CredentialStore for One {
        fn scram_credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            (user == "alice" && m == self.0).then(|| self.1.clone())
        }
    }

    #[test]
    fn verifies_against_either_scram_credential() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let store = One(m, ScramCredential::from_password(m, b"pw", b"salt", 4096));
            match authenticate(&client_message("alice", "pw"), &store) {
                Ok(SaslStep::Complete { principal, .. }) => assert_eq!(principal, "alice"),
                other => panic!("{other:?}"),
            }
            assert!(authenticate(b"alice\0alice\0pw", &store).is_ok());
            for bad in [
                &client_message("alice", "px")[..],
                &client_message("bob", "pw"),
            ] {
                assert_eq!(
                    authenticate(bad, &store),
                    Err(SaslError::AuthenticationFailed(
                        "Invalid username or password".into()
                    ))
                );
            }
            assert!(matches!(
                authenticate(b"bob\0alice\0pw", &store),
                Err(SaslError::AuthenticationFailed(_))
            ));
            for garbage in [
                &b"garbage"[..],
                b"\0alice",
                b"\0\0",
                b"\xff\0a\0b",
                b"a\0b\0c\0d",
            ] {
                assert!(
                    matches!(
                        authenticate(garbage, &store),
                        Err(SaslError::Malformed { .. })
                    ),
                    "{garbage:?}"
                );
            }
        }
    }
}
