//! Request extractors whose failures are [`ApiError`]s: axum's own `Json`
//! answers 415/422 with a text body, while our contract is a JSON 400 that
//! names the field (via `serde_path_to_error`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::Ctx;

/// A JSON body of type `T` (request types use `deny_unknown_fields`).
pub struct JsonBody<T>(pub T);

/// A body that must be empty or `{}` (release, restore, cancel, complete,
/// reload): anything else is refused rather than silently ignored.
pub struct NoBody;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

impl<T: DeserializeOwned> FromRequest<Ctx> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &Ctx) -> Result<Self, ApiError> {
        let bytes = read(req, ctx).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl FromRequest<Ctx> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &Ctx) -> Result<Self, ApiError> {
        let bytes = read(req, ctx).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoBody);
        }
        parse_json::<Empty>(&bytes).map(|_| NoBody)
    }
}

async fn read(req: Request, ctx: &Ctx) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, &()).await.map_err(|e| rejection(e, ctx.body_limit))
}

fn rejection(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge { limit }
    } else {
        ApiError::BadBody(e.body_text())
    }
}

/// Parses a whole JSON document into `T`; the error names the offending
/// field path (`carriers[1]: invalid type ...`).
pub fn parse_json<T: DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(b);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::BadJson(e.into_inner().to_string())
        } else {
            ApiError::BadJson(format!("{path}: {}", e.into_inner()))
        }
    })?;
    de.end().map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::ClaimSpec;

    fn msg(b: &str) -> String {
        match parse_json::<ClaimSpec>(b.as_bytes()) {
            Err(e) => e.to_string(),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(msg(r#"{"flow":"f","carriers":["a"]}"#), "ok");
        assert!(msg(r#"{"flow":"f","carrier":["a"]}"#).contains("unknown field `carrier`"));
        assert!(msg(r#"{"flow":"f","carriers":["a",1]}"#).contains("carriers[1]"));
        assert!(msg(r#"{"flow":"f","kind":"mobile","carriers":["a"]}"#).contains("kind"));
        assert!(msg(r#"{"flow":"f"} x"#).contains("trailing"));
        assert!(msg("").starts_with("bad JSON body"));
    }
}
