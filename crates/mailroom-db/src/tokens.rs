//! The `api_tokens` table: the upload API's scoped bearer tokens, made by `mailroom token create`,
//! listed and revoked by `mailroom token list|revoke`, and checked by the upload API on every
//! request.
//!
//! A token is `mrt_` followed by 32 random bytes from the operating system in unpadded base64url
//! (47 characters). It is shown once, when it is made; the table keeps only its SHA-256 (hex),
//! which is enough for a random 256-bit secret: nothing can be guessed from the hash, and a
//! lookup is a plain equality on an indexed column, so its timing says nothing about the secret.
//!
//! A token has a [`Role`] and, except for `admin`, one agent (the mailbox whose documents it
//! reaches, in the canonical lower-case form of [`agent_address`]). What a role may do is
//! [`Scope::reaches`] and [`Scope::may_write`]; the upload API maps a refusal to 403. A revoked
//! token is found no more by [`authenticate`], from the next request on (nothing is cached).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use pipeline_core::messages::agent_address;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

/// What every token made here starts with (so a leaked one is recognisable, and the upload API
/// looks up only strings that can be tokens).
pub const PREFIX: &str = "mrt_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Upload, list, show and delete the documents of its agent.
    Upload,
    /// List and show the documents of its agent.
    Read,
    /// Everything, for every agent.
    Admin,
}

impl Role {
    /// The name stored in the table and printed by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Upload => "upload",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `upload`, `read`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected upload, read or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "upload" => Ok(Role::Upload),
            "read" => Ok(Role::Read),
            "admin" => Ok(Role::Admin),
            _ => Err(UnknownRole(s.to_owned())),
        }
    }
}

/// What an accepted token reaches: its role and, unless it is an admin token, its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The token's row, or `None` for the token of the settings (`upload_api.token`).
    pub token_id: Option<i64>,
    /// Its role.
    pub role: Role,
    /// Its agent (canonical form); `None` for an admin token.
    pub agent_email: Option<String>,
}

impl Scope {
    /// The configured token of the settings: admin, for every agent.
    pub fn configured_admin() -> Self {
        Self { token_id: None, role: Role::Admin, agent_email: None }
    }

    /// Whether the token reaches the documents of `agent` (in any form: it is canonicalised).
    pub fn reaches(&self, agent: &str) -> bool {
        match (self.role, &self.agent_email) {
            (Role::Admin, _) => true,
            (_, Some(own)) => *own == agent_address(agent),
            (_, None) => false,
        }
    }

    /// Whether the token may upload and delete documents (of the agents it reaches).
    pub fn may_write(&self) -> bool {
        matches!(self.role, Role::Upload | Role::Admin)
    }
}

impl fmt::Display for Scope {
    /// For logs: `configured admin token`, `admin token 3`, `upload token 7 (support@x)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.token_id, &self.agent_email) {
            (None, _) => write!(f, "configured {} token", self.role),
            (Some(id), None) => write!(f, "{} token {id}", self.role),
            (Some(id), Some(agent)) => write!(f, "{} token {id} ({agent})", self.role),
        }
    }
}

/// A token's row, without its hash: what `mailroom token list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    /// Id, for `mailroom token revoke`.
    pub id: i64,
    /// Its agent; `None` for an admin token.
    pub agent_email: Option<String>,
    /// `upload`, `read` or `admin`.
    pub role: String,
    /// The operator's note, if any.
    pub label: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When the upload API last accepted it (at most a minute behind).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

crate::from_row!(TokenRow { id, agent_email, role, label, created_at, last_used_at, revoked_at });

const COLUMNS: &str = "id, agent_email, role, label, created_at, last_used_at, revoked_at";

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// An `upload` or `read` token without an agent.
    #[error("a {0} token belongs to one agent: name its mailbox address (--agent support@example.com)")]
    AgentRequired(Role),
    /// An admin token with an agent.
    #[error("an admin token reaches every agent's documents and names none: leave out the agent")]
    AgentForAdmin,
    /// The agent is not a mailbox address.
    #[error("{0:?} is not a mailbox address (expected something like support@example.com)")]
    BadAgent(String),
    /// No randomness from the operating system.
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    /// The insert failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// The stored form of a token: its SHA-256, lower-case hex.
pub fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// A new secret: [`PREFIX`] and 32 random bytes, base64url without padding.
pub fn generate() -> Result<SecretString, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(SecretString::from(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))))
}

fn valid_agent(agent: &str) -> bool {
    agent.len() <= 254
        && agent.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !agent.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Makes a token and stores its hash. Returns the row and the secret, which exists nowhere else:
/// show it once.
pub async fn create(
    pool: &PgPool,
    role: Role,
    agent: Option<&str>,
    label: Option<&str>,
) -> Result<(TokenRow, SecretString), TokenError> {
    let agent = match (role, agent.map(agent_address).filter(|a| !a.is_empty())) {
        (Role::Admin, None) => None,
        (Role::Admin, Some(_)) => return Err(TokenError::AgentForAdmin),
        (role, None) => return Err(TokenError::AgentRequired(role)),
        (_, Some(agent)) if !valid_agent(&agent) => return Err(TokenError::BadAgent(agent)),
        (_, Some(agent)) => Some(agent),
    };
    let label = label.map(str::trim).filter(|l| !l.is_empty());
    let secret = generate()?;
    let row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_tokens (agent_email, role, token_hash, label) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    )))
    .bind(agent)
    .bind(role.as_str())
    .bind(hash(secret.expose_secret()))
    .bind(label)
    .fetch_one(pool)
    .await?;
    Ok((row, secret))
}

/// Every token, oldest first (revoked ones included).
pub async fn list(pool: &PgPool) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM api_tokens ORDER BY id"))).fetch_all(pool).await
}

/// What [`revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// Revoked now.
    Now(TokenRow),
    /// It was revoked before (the row as it is).
    Already(TokenRow),
    /// No token has this id.
    NotFound,
}

/// Revokes a token: the upload API refuses it from the next request on.
pub async fn revoke(pool: &PgPool, id: i64) -> Result<Revoked, sqlx::Error> {
    let now: Option<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = now {
        return Ok(Revoked::Now(row));
    }
    let before: Option<TokenRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(before.map_or(Revoked::NotFound, Revoked::Already))
}

/// The scope of a presented token, or `None` when it is unknown or revoked. Records the use
/// (`last_used_at`, written at most once a minute per token, so polling clients do not write a
/// row per request).
pub async fn authenticate(pool: &PgPool, presented: &str) -> Result<Option<Scope>, sqlx::Error> {
    if !presented.starts_with(PREFIX) {
        return Ok(None);
    }
    let found: Option<(i64, Option<String>, String)> = sqlx::query_as(
        "WITH found AS (
             SELECT id, agent_email, role, last_used_at FROM api_tokens
             WHERE token_hash = $1 AND revoked_at IS NULL
         ), touched AS (
             UPDATE api_tokens SET last_used_at = now()
             WHERE id IN (SELECT id FROM found
                          WHERE last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
         )
         SELECT id, agent_email, role FROM found",
    )
    .bind(hash(presented))
    .fetch_optional(pool)
    .await?;
    Ok(found.and_then(|(id, agent_email, role)| {
        // The table's CHECK admits only the three names.
        let role = role.parse().ok()?;
        Some(Scope { token_id: Some(id), role, agent_email })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_prefix_and_256_random_bits_and_its_hash_is_hex_sha256() {
        let a = generate().expect("random");
        let b = generate().expect("random");
        let a = a.expose_secret();
        assert!(a.starts_with(PREFIX), "{a}");
        assert_eq!(a.len(), PREFIX.len() + 43, "{a}");
        assert_ne!(a, b.expose_secret());
        let decoded = URL_SAFE_NO_PAD.decode(&a[PREFIX.len()..]).expect("base64url");
        assert_eq!(decoded.len(), 32);
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hash(a).len(), 64);
    }

    #[test]
    fn roles_parse_and_scopes_reach_their_agent_only() {
        assert_eq!("Upload".parse::<Role>(), Ok(Role::Upload));
        assert_eq!("read".parse::<Role>(), Ok(Role::Read));
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("owner".parse::<Role>().is_err());

        let upload = Scope { token_id: Some(1), role: Role::Upload, agent_email: Some("support@a.example".into()) };
        assert!(upload.reaches("Support@A.example ") && upload.may_write());
        assert!(!upload.reaches("help@b.example"));
        let read = Scope { role: Role::Read, ..upload.clone() };
        assert!(read.reaches("support@a.example") && !read.may_write());
        let admin = Scope::configured_admin();
        assert!(admin.reaches("anyone@b.example") && admin.may_write());
        assert_eq!(upload.to_string(), "upload token 1 (support@a.example)");
        assert_eq!(admin.to_string(), "configured admin token");
    }
}
