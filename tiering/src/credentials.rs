//! [`AwsChainCredentials`]: S3 credentials from the standard AWS chain (`aws-config`'s
//! `DefaultCredentialsChain`), handed to `object_store`'s S3 client as its
//! [`CredentialProvider`].
//!
//! The chain, first match wins: environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`); the shared profile files (`AWS_SHARED_CREDENTIALS_FILE`,
//! `AWS_CONFIG_FILE`, `AWS_PROFILE`; assume-role and `credential_process` profiles included,
//! SSO profiles not); web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, through
//! STS); the ECS task role; EC2 instance metadata (IMDSv2).
//!
//! Credentials are cached and resolved again [`REFRESH_BEFORE_EXPIRY`] before they expire;
//! ones without an expiry (static keys) are resolved again every [`STATIC_REFRESH`], so a
//! rotated profile file is picked up without a restart. A failed refresh while the cached
//! credentials are still valid keeps them (and warns) rather than failing requests.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::ProvideCredentials;
use object_store::aws::AwsCredential;
use object_store::CredentialProvider;
use tokio::sync::{Mutex, OnceCell};

/// How long before expiry temporary credentials are replaced, so a request signed with them
/// never reaches the server after they lapse.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How often credentials without an expiry are resolved again.
pub const STATIC_REFRESH: Duration = Duration::from_secs(3600);
/// How long a failed refresh waits before the next try while the cached credentials last.
const RETRY_FAILED_REFRESH: Duration = Duration::from_secs(10);

/// See the module documentation.
pub struct AwsChainCredentials {
    /// Region for the chain's own calls (STS for web identity); `None`: the chain's region
    /// lookup (environment, profile, instance metadata).
    region: Option<String>,
    // Built on first use: building resolves a region, which is async.
    chain: OnceCell<DefaultCredentialsChain>,
    // Held across the chain's lookup so concurrent requests share one refresh instead of each
    // asking instance metadata or STS.
    cached: Mutex<Option<CachedCredential>>,
}

struct CachedCredential {
    credential: Arc<AwsCredential>,
    /// When to resolve again.
    refresh_at: SystemTime,
    /// After this the credential must not be used.
    expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for AwsChainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("AwsChainCredentials")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsChainCredentials {
    pub fn new(region: Option<String>) -> AwsChainCredentials {
        AwsChainCredentials {
            region: region.filter(|r| !r.is_empty()),
            chain: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }

    async fn build_chain(&self) -> DefaultCredentialsChain {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        // The chain's HTTP calls (IMDS, ECS, STS) go through rustls on ring, like the S3
        // client's own; aws-config's default client would pull in aws-lc-rs.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut builder = DefaultCredentialsChain::builder()
            .configure(ProviderConfig::default().with_http_client(http));
        if let Some(r) = &self.region {
            builder = builder.region(aws_config::Region::new(r.clone()));
        }
        builder.build().await
    }

    async fn resolve(&self) -> object_store::Result<CachedCredential> {
        let chain = self.chain.get_or_init(|| self.build_chain()).await;
        let c = chain
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: format!("no AWS credentials from the default chain: {e}").into(),
            })?;
        let now = SystemTime::now();
        let expires_at = c.expiry();
        let refresh_at = match expires_at {
            Some(t) => t.checked_sub(REFRESH_BEFORE_EXPIRY).unwrap_or(now).max(now),
            None => now + STATIC_REFRESH,
        };
        Ok(CachedCredential {
            credential: Arc::new(AwsCredential {
                key_id: c.access_key_id().to_string(),
                secret_key: c.secret_access_key().to_string(),
                token: c.session_token().map(str::to_string),
            }),
            refresh_at,
            expires_at,
        })
    }
}

#[async_trait]
impl CredentialProvider for AwsChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cached.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(c.credential.clone());
        }
        match self.resolve().await {
            Ok(fresh) => {
                let credential = fresh.credential.clone();
                *cached = Some(fresh);
                Ok(credential)
            }
            Err(e) => {
                let still_valid = cached
                    .as_mut()
                    .filter(|c| c.expires_at.is_none_or(|t| now < t));
                match still_valid {
                    Some(c) => {
                        tracing::warn!(error = %e, "refreshing AWS credentials failed; using the cached ones until they expire");
                        // Not every request: try again a little later.
                        c.refresh_at = now + RETRY_FAILED_REFRESH;
                        Ok(c.credential.clone())
                    }
                    None => Err(e),
                }
            }
        }
    }
}
