//! What to say when an HTTP request got no answer at all, for the API client and the metadata client
//! alike. The `reqwest` error itself travels on as the error's `source()`; this is the one-line text.

use crate::error::TransportKind;

/// A one-line description of a transport failure, without the URL (which the caller names itself):
/// "timed out", "connection failed: <root cause>", or the root cause.
pub(crate) fn transport_message(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        format!("connection failed: {root}")
    } else {
        root.to_string()
    }
}

/// The kind of a failure to send a request (timeout, connect, other).
pub(crate) fn send_failure_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    }
}

/// The kind of a failure to read an answer's body (the connection was made: timeout or other).
pub(crate) fn body_failure_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Other
    }
}
