//! `POST /v1/secret-scanning/reports`: GitHub's secret-scanning partner program. GitHub
//! posts the strings it found that look like jeton tokens, signed with ECDSA P-256 /
//! SHA-256 over the raw body (`Github-Public-Key-Signature`, base64 of a DER signature, by
//! the key `Github-Public-Key-Identifier` names). Keys come from `--secret-scanning-keys`, a
//! file in the format GitHub publishes them in; nothing is fetched at run time.
//!
//! A report whose signature does not verify is 401 and changes nothing. Otherwise each live
//! token it names (its secret verified) is revoked at once, wherever its tenant, and audited
//! there (`AUDIT_ACTION_TOKEN_LEAKED`, with the report's `url` and `source`); the answer is
//! GitHub's feedback format, one entry per reported string: its SHA-256 (`token_hash`),
//! `token_type`, and `label` `true_positive` (revoked now) or `false_positive` (not a token,
//! unknown, already revoked or expired, or a wrong secret). Idempotent: a second report of
//! the same token finds it revoked.

use super::{Front, failed, json, plain};
use crate::domain::ReportText;
use crate::usecase::LeakReport;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use p256::ecdsa::{DerSignature, VerifyingKey, signature::Verifier};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Largest report read: GitHub batches what it found.
pub(super) const MAX_REPORT: usize = 1024 * 1024;
/// Most strings in one report.
const MAX_ITEMS: usize = 1000;

const KEY_ID: &str = "github-public-key-identifier";
const SIGNATURE: &str = "github-public-key-signature";

/// The public keys reports may be signed with, by identifier.
pub(crate) struct Keys(HashMap<String, VerifyingKey>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Keys").field(&self.0.len()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: not GitHub's key list ({{\"public_keys\": [{{\"key_identifier\", \"key\"}}]}}): {reason}"
    )]
    Format { path: String, reason: String },
}

#[derive(Deserialize)]
struct KeyList {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
}

impl Keys {
    /// Reads GitHub's published key list. Every key in it is trusted (GitHub keeps the
    /// previous key listed while it rotates).
    pub(crate) fn load(path: &Path) -> Result<Self, KeysError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: shown.clone(),
            source,
        })?;
        let format = |reason: String| KeysError::Format {
            path: shown.clone(),
            reason,
        };
        let list: KeyList = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        let mut keys = HashMap::new();
        for k in list.public_keys {
            let key = VerifyingKey::from_public_key_pem(&k.key).map_err(|e| {
                format(format!(
                    "key {:?} is not a P-256 public key: {e}",
                    k.key_identifier
                ))
            })?;
            keys.insert(k.key_identifier, key);
        }
        if keys.is_empty() {
            return Err(format("no keys".into()));
        }
        Ok(Self(keys))
    }

    /// Whether `body` carries a valid signature by one of the keys.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let id = header(KEY_ID).ok_or("missing Github-Public-Key-Identifier")?;
        let signature = header(SIGNATURE).ok_or("missing Github-Public-Key-Signature")?;
        let key = self.0.get(id).ok_or("unknown key identifier")?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| "signature: not base64")?;
        let signature = DerSignature::try_from(der.as_slice()).map_err(|_| "signature: not DER")?;
        key.verify(body, &signature)
            .map_err(|_| "signature does not verify")
    }
}

/// One string GitHub found.
#[derive(Deserialize)]
struct Found {
    token: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    source: String,
}

pub(super) async fn report(
    State(front): State<Front>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(keys) = &front.scanning else {
        return plain(
            StatusCode::NOT_FOUND,
            "secret scanning is off: start jeton with --secret-scanning-keys",
        );
    };
    if let Err(reason) = keys.verify(&headers, &body) {
        tracing::info!(reason, "secret-scanning report refused");
        return plain(StatusCode::UNAUTHORIZED, reason);
    }
    let Ok(found) = serde_json::from_slice::<Vec<Found>>(&body) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "body: expected a JSON array of {token, type, url, source}",
        );
    };
    if found.len() > MAX_ITEMS {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body: at most 1000 strings per report",
        );
    }
    // Every item's free text passes the rule of every other text before anything is
    // revoked: a report is handled whole or refused whole.
    let mut reports = Vec::with_capacity(found.len());
    for (i, f) in found.iter().enumerate() {
        let text = |field: &str, s: &str| match s {
            "" => Ok(None),
            s => ReportText::parse(s)
                .map(Some)
                .map_err(|e| format!("[{i}].{field}: {e}")),
        };
        match (text("url", &f.url), text("source", &f.source)) {
            (Ok(url), Ok(source)) => reports.push(LeakReport::Scanner { url, source }),
            (Err(refused), _) | (_, Err(refused)) => {
                return plain(StatusCode::BAD_REQUEST, &refused);
            }
        }
    }
    let mut feedback = Vec::with_capacity(found.len());
    let mut revoked = 0;
    for (f, report) in found.into_iter().zip(reports) {
        let now_revoked = match front
            .access
            .revoke_leaked(std::slice::from_ref(&f.token), &report)
            .await
        {
            Ok(r) => r.first().copied().unwrap_or(false),
            Err(e) => return failed(e),
        };
        revoked += usize::from(now_revoked);
        feedback.push(serde_json::json!({
            "token_hash": hex(&Sha256::digest(f.token.as_bytes())),
            "token_type": f.kind,
            "label": if now_revoked { "true_positive" } else { "false_positive" },
        }));
    }
    tracing::info!(
        reported = feedback.len(),
        revoked,
        "secret-scanning report handled"
    );
    json(StatusCode::OK, &serde_json::Value::Array(feedback))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
