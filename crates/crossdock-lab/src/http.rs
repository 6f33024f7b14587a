//! Blocking calls over unix-socket HTTP for the lab's synchronous code.
//!
//! The lab is plain synchronous code (it is mostly `ip`, `nsenter` and process management) and is called
//! both from the CLI and from `#[tokio::test]`s. Starting a runtime inside a runtime panics, so each call
//! runs `crossdock_unixhttp` on a short-lived thread with its own current-thread runtime.

use anyhow::{anyhow, Context, Result};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

pub use crossdock_unixhttp::Response;

/// Runs a future to completion on a fresh thread with its own runtime; safe inside or outside tokio.
pub fn block_on<F>(future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
    })
    .join()
    .map_err(|_| anyhow!("the HTTP helper thread panicked"))?
    .context("cannot start a tokio runtime")
}

/// One request over a unix socket, with a deadline.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response> {
    let socket = socket.to_path_buf();
    let method = method.to_string();
    let path = path.to_string();
    let content_type = body.as_ref().map(|_| "application/json");
    let result = block_on(async move {
        crossdock_unixhttp::request_with_timeout(
            &socket,
            &method,
            &path,
            body,
            content_type,
            timeout,
        )
        .await
    })?;
    Ok(result?)
}

/// GET with a deadline.
pub fn get(socket: &Path, path: &str, timeout: Duration) -> Result<Response> {
    request(socket, "GET", path, None, timeout)
}
