//! Bearer-token authentication: when the server has a token, every request but
//! `/healthz` and the dashboard's static files (which hold no data) must carry
//! `Authorization: Bearer <token>`.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// Whether `path` is served without a token.
fn is_public(path: &str) -> bool {
    path == "/healthz" || crate::assets::is_asset_path(path)
}

/// Equal, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: checks the bearer token of requests that need one.
pub async fn require_token(
    State(token): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_deref() else {
        return next.run(request).await;
    };
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let message = match given {
        None => "this server needs a token: send 'Authorization: Bearer <token>'",
        Some(v) => match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => {
                if same(t.trim().as_bytes(), token.as_bytes()) {
                    return next.run(request).await;
                }
                "the bearer token is wrong"
            }
            _ => "the Authorization header must be 'Bearer <token>'",
        },
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Refuses to listen on a non-loopback address without a token (anyone who reaches it
/// could run code on this machine), and an empty token.
pub fn check_bind(addr: SocketAddr, token: Option<&str>) -> Result<(), String> {
    if token.is_some_and(|t| t.trim().is_empty()) {
        return Err("the token is empty: give a non-empty --token (or SLUICE_TOKEN)".into());
    }
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without a token: anyone who can reach it could upload and run code on this machine. Set a token (--token or SLUICE_TOKEN), or bind a loopback address (127.0.0.1, the default)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token() {
        let any: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8081".parse().unwrap();
        assert!(
            check_bind(any, None)
                .unwrap_err()
                .contains("without a token")
        );
        assert!(check_bind(any, Some("s3cret")).is_ok());
        assert!(check_bind(lo, None).is_ok());
        assert!(check_bind(lo6, None).is_ok());
        assert!(check_bind(lo, Some(" ")).unwrap_err().contains("empty"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
