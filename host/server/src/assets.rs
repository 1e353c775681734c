//! The dashboard's files (`web-ui/`, built by `build.rs` with npm and Vite), embedded in
//! the binary so that running the server needs no Node.js. `/` is its `index.html`;
//! its hashed files under `/assets/` are cached for a year, `index.html` never.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The embedded files: `(path, media type, content)`, `/index.html` among them.
pub const FILES: &[(&str, &str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Whether `path` is one of the dashboard's files (served without a token: they hold no
/// data; the API they call needs it).
pub fn is_asset_path(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/") || FILES.iter().any(|(p, _, _)| *p == path)
}

/// Serves an embedded file (`/` is `/index.html`); 404 in the API's error shape for
/// any other path.
pub async fn serve(uri: Uri) -> Response {
    let path = match uri.path() {
        "/" => "/index.html",
        p => p,
    };
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, media, body)) => {
            let cache = if path.starts_with("/assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            (
                [
                    (header::CONTENT_TYPE, *media),
                    (header::CACHE_CONTROL, cache),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                *body,
            )
                .into_response()
        }
        None => crate::error::ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such file: {path}"),
        )
        .into_response(),
    }
}
