//! The HTTP listener (`[http]`): where it listens and the bearer token its `/api/`
//! endpoints require (`CARA_HTTP_TOKEN` wins over the file); a listener reachable
//! beyond loopback without a token is refused.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// The HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for `/healthz`, `/readyz`, `/metrics` (always open) and the `/api/`
    /// endpoints.
    pub listen: SocketAddr,
    /// Bearer token the `/api/` endpoints require (`Authorization: Bearer TOKEN`);
    /// the environment variable `CARA_HTTP_TOKEN` takes precedence. Without one,
    /// cara listens on loopback addresses only.
    pub token: String,
}

/// The environment variable that holds the HTTP token.
pub const HTTP_TOKEN_ENV: &str = "CARA_HTTP_TOKEN";

/// The shortest token accepted: a guessable token is no protection.
const MIN_TOKEN_CHARS: usize = 16;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
            token: String::new(),
        }
    }
}

impl HttpConfig {
    /// The token in force: `CARA_HTTP_TOKEN` when set and not empty, else `http.token`,
    /// else none.
    pub fn effective_token(&self) -> Option<String> {
        std::env::var(HTTP_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| Some(self.token.clone()).filter(|t| !t.is_empty()))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.effective_token() {
            Some(token) if token.chars().count() < MIN_TOKEN_CHARS => Err(invalid(
                "http.token",
                format!("must be at least {MIN_TOKEN_CHARS} characters (or set {HTTP_TOKEN_ENV})"),
            )),
            None if !self.listen.ip().is_loopback() => Err(invalid(
                "http.listen",
                format!(
                    "{} is reachable beyond this machine; set http.token (or {HTTP_TOKEN_ENV}) so the APIs require a bearer token, or listen on 127.0.0.1",
                    self.listen
                ),
            )),
            _ => Ok(()),
        }
    }
}
