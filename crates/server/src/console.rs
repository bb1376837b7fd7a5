//! The web console (`/console`) and the embeddable account-activity view, served from files
//! compiled into the binary: `cargo run --release -- serve` needs no other build step.
//!
//! The files hold no data: every page reads the API with the credential its user gives it, so
//! they are served without one. A debug build reads them from `crates/server/console/` at each
//! request when that folder exists, so a page can be edited and reloaded without a rebuild.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::problem::ApiError;

/// Every file of the console: its name, its media type and its text as compiled in.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
    (
        "activity.html",
        "text/html; charset=utf-8",
        include_str!("../console/activity.html"),
    ),
    (
        "activity.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/activity.js"),
    ),
    (
        "embed.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/embed.js"),
    ),
];

/// The console's pages run only their own scripts and talk only to this origin. The embeddable
/// view may be framed by any site (it shows only what its token may read); the console may not.
const CONSOLE_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";
const EMBED_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors *; base-uri 'none'";

pub(crate) async fn index() -> Response {
    serve("index.html")
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(name: &str) -> Response {
    let Some((name, media_type, compiled)) = FILES.iter().find(|(known, ..)| *known == name) else {
        return ApiError::refused(
            StatusCode::NOT_FOUND,
            "path",
            format!("no console file {name}"),
        )
        .into_response();
    };
    let text = on_disk(name).unwrap_or_else(|| (*compiled).to_owned());
    let policy = match *name {
        "activity.html" | "activity.js" | "embed.js" => EMBED_POLICY,
        _ => CONSOLE_POLICY,
    };
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The file as it is in the source tree now, in a debug build (for editing the pages).
#[cfg(debug_assertions)]
fn on_disk(name: &str) -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("console")
        .join(name);
    std::fs::read_to_string(path).ok()
}

#[cfg(not(debug_assertions))]
fn on_disk(_name: &str) -> Option<String> {
    None
}
