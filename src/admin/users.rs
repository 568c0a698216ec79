//! `strata users`: SCRAM users over AlterUserScramCredentials and DescribeUserScramCredentials
//! (KIP-554), as `kafka-configs --alter --add-config 'SCRAM-SHA-256=[password=...]'` does. The
//! password is salted and hashed here; only the salted password crosses the wire.

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};

use super::{check, connect};
use crate::protocol::str_bytes;
use crate::sasl::{ScramCredential, ScramMechanism};

#[derive(Args, Debug)]
pub struct UsersArgs {
    /// host:port of any broker.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ...
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user's SCRAM credential, or replace its password.
    Create {
        name: String,
        /// The password; `-` reads it from the first line of standard input.
        #[arg(long)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512 (repeatable; default both).
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
    /// Delete a user's SCRAM credentials (all mechanisms unless --mechanism).
    Delete {
        name: String,
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
    },
    /// List users and their SCRAM mechanisms.
    List,
}

fn mechanisms(names: &[String]) -> anyhow::Result<Vec<ScramMechanism>> {
    if names.is_empty() {
        return Ok(vec![ScramMechanism::Sha256, ScramMechanism::Sha512]);
    }
    names
        .iter()
        .map(|n| {
            ScramMechanism::parse(&n.to_ascii_uppercase()).ok_or_else(|| {
                anyhow::anyhow!("unknown mechanism {n}: SCRAM-SHA-256 or SCRAM-SHA-512")
            })
        })
        .collect()
}

pub async fn run_users(args: UsersArgs) -> anyhow::Result<()> {
    super::command_config::load(args.command_config.as_deref())?;
    let mut client = connect(&args.bootstrap_server).await?;
    let req = match args.command {
        UsersCommand::List => {
            let resp = client
                .send(&DescribeUserScramCredentialsRequest::default(), 0)
                .await?;
            check(
                resp.error_code,
                resp.error_message.as_deref(),
                "describing users",
            )?;
            for r in &resp.results {
                let infos: Vec<String> = r
                    .credential_infos
                    .iter()
                    .map(|c| {
                        let m = ScramMechanism::from_type_id(c.mechanism)
                            .map_or("unknown", ScramMechanism::name);
                        format!("{m} (iterations {})", c.iterations)
                    })
                    .collect();
                println!("{}\t{}", r.user.as_str(), infos.join(", "));
            }
            return Ok(());
        }
        UsersCommand::Create {
            name,
            password,
            mechanisms: names,
            iterations,
        } => {
            let password = if password == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                password
            };
            if password.is_empty() {
                bail!("the password must not be empty");
            }
            let upsertions = mechanisms(&names)?
                .into_iter()
                .map(|m| {
                    let salt = ScramCredential::random_salt(m);
                    ScramCredentialUpsertion::default()
                        .with_name(str_bytes(name.clone()))
                        .with_mechanism(m.type_id())
                        .with_iterations(iterations as i32)
                        .with_salted_password(
                            m.salted_password(password.as_bytes(), &salt, iterations)
                                .into(),
                        )
                        .with_salt(salt.into())
                })
                .collect();
            AlterUserScramCredentialsRequest::default().with_upsertions(upsertions)
        }
        UsersCommand::Delete {
            name,
            mechanisms: names,
        } => {
            // Without --mechanism: the mechanisms the user has (a user's deletions succeed or
            // fail together, so naming an absent one would refuse them all).
            let chosen = if names.is_empty() {
                let described = client
                    .send(
                        &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                            UserName::default().with_name(str_bytes(name.clone())),
                        ])),
                        0,
                    )
                    .await?;
                let r = described
                    .results
                    .first()
                    .ok_or_else(|| anyhow::anyhow!("no answer for user {name}"))?;
                check(
                    r.error_code,
                    r.error_message.as_deref(),
                    &format!("user {name}"),
                )?;
                r.credential_infos
                    .iter()
                    .filter_map(|c| ScramMechanism::from_type_id(c.mechanism))
                    .collect()
            } else {
                mechanisms(&names)?
            };
            let deletions = chosen
                .into_iter()
                .map(|m| {
                    ScramCredentialDeletion::default()
                        .with_name(str_bytes(name.clone()))
                        .with_mechanism(m.type_id())
                })
                .collect();
            AlterUserScramCredentialsRequest::default().with_deletions(deletions)
        }
    };
    let resp = client.send(&req, 0).await?;
    for r in &resp.results {
        check(
            r.error_code,
            r.error_message.as_deref(),
            &format!("user {}", r.user.as_str()),
        )?;
        println!("{}: done", r.user.as_str());
    }
    Ok(())
}
