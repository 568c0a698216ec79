//! S3 credentials come from the standard AWS chain: the provider itself is asked which keys it
//! found (moto accepts any keys, so only the provider can tell the sources apart), and one
//! upload through moto runs with keys from the environment.
//!
//! The tests change process environment variables, so they hold one lock; instance metadata is
//! disabled so that a chain that finds nothing never reaches for the network.

mod common;

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use object_store::CredentialProvider;
use strata_tiering::{AwsChainCredentials, RemoteStorage};

static ENV: Mutex<()> = Mutex::new(());

const AWS_VARS: [&str; 9] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// Takes the lock and clears every variable the chain reads.
fn clean_env() -> MutexGuard<'static, ()> {
    let g = ENV.lock().unwrap_or_else(|p| p.into_inner());
    for v in AWS_VARS {
        std::env::remove_var(v);
    }
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_REGION", "us-east-1");
    // No ~/.aws of the machine running the tests.
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/config");
    g
}

async fn keys(p: &AwsChainCredentials) -> (String, String, Option<String>) {
    let c = p.get_credential().await.expect("credentials");
    (c.key_id.clone(), c.secret_key.clone(), c.token.clone())
}

#[tokio::test]
async fn keys_from_the_environment_win_and_are_cached() {
    let _g = clean_env();
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIAENV");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret-env");
    std::env::set_var("AWS_SESSION_TOKEN", "token-env");
    let p = AwsChainCredentials::new(Some("us-east-1".into()));
    assert_eq!(
        keys(&p).await,
        (
            "AKIAENV".into(),
            "secret-env".into(),
            Some("token-env".into())
        )
    );
    // Cached: a change of environment is not seen until the refresh time.
    let first = p.get_credential().await.expect("credentials");
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIACHANGED");
    let second = p.get_credential().await.expect("credentials");
    assert!(Arc::ptr_eq(&first, &second));
}

#[tokio::test]
async fn keys_from_the_profile_files() {
    let _g = clean_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("credentials");
    let config = dir.path().join("config");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = secret-default\n\n\
         [strata-test]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = secret-profile\n\
         aws_session_token = token-profile\n",
    )
    .expect("write credentials");
    std::fs::write(
        &config,
        "[profile strata-test]\nregion = eu-west-1\n\n\
         [profile config-only]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = secret-config\n",
    )
    .expect("write config");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
    std::env::set_var("AWS_CONFIG_FILE", &config);

    let p = AwsChainCredentials::new(Some("us-east-1".into()));
    assert_eq!(
        keys(&p).await,
        ("AKIADEFAULT".into(), "secret-default".into(), None),
        "no AWS_PROFILE: the default profile"
    );

    std::env::set_var("AWS_PROFILE", "strata-test");
    let p = AwsChainCredentials::new(None);
    assert_eq!(
        keys(&p).await,
        (
            "AKIAPROFILE".into(),
            "secret-profile".into(),
            Some("token-profile".into())
        )
    );

    std::env::set_var("AWS_PROFILE", "config-only");
    let p = AwsChainCredentials::new(Some("us-east-1".into()));
    assert_eq!(
        keys(&p).await,
        ("AKIACONFIG".into(), "secret-config".into(), None),
        "keys in the config file"
    );

    std::env::set_var("AWS_PROFILE", "missing");
    let p = AwsChainCredentials::new(Some("us-east-1".into()));
    assert!(p.get_credential().await.is_err(), "no source has keys");
}

#[tokio::test]
async fn upload_to_moto_with_keys_from_the_environment() {
    let _g = clean_env();
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let moto = common::MotoServer::start();
    let s = moto.storage("credentials", "env");
    s.put("a/object", Bytes::from_static(b"signed with env keys"))
        .await
        .expect("put");
    assert_eq!(
        s.get("a/object").await.expect("get"),
        Bytes::from_static(b"signed with env keys")
    );
}
