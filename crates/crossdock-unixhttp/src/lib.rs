//! HTTP/1.1 over unix sockets, the way every local control channel of crossdock talks.
//!
//! The agent's health socket, the lab emulator's admin and API sockets and the CLI commands that read them
//! (`status`, `doctor`, `lab`) all speak plain HTTP on a filesystem socket. Unix sockets carry file
//! permissions (the health socket is 0660) and cross network namespaces by path, which is what lets tools in
//! the root namespace reach servers that live inside the lab's namespaces without any route. This crate is
//! the client side (one request per connection) and the socket binding the servers share; the servers
//! themselves are axum routers served on the returned listener.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

/// A response: status, headers (lower-case names) and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request over a unix socket failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {path}: {source} (is the server running, and may this user open the socket?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP exchange over {path} failed: {message}")]
    Http { path: PathBuf, message: String },
    #[error("no answer from {path} within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("cannot bind {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Default time a whole request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one request and reads the whole response, within [`DEFAULT_TIMEOUT`].
pub async fn request(
    socket: impl AsRef<Path>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    content_type: Option<&str>,
) -> Result<Response, Error> {
    request_with_timeout(socket, method, path, body, content_type, DEFAULT_TIMEOUT).await
}

/// [`request`] with an explicit deadline.
pub async fn request_with_timeout(
    socket: impl AsRef<Path>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    content_type: Option<&str>,
    timeout: Duration,
) -> Result<Response, Error> {
    let socket = socket.as_ref().to_path_buf();
    match tokio::time::timeout(timeout, exchange(&socket, method, path, body, content_type)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            path: socket,
            timeout,
        }),
    }
}

/// GET and decode JSON.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    socket: impl AsRef<Path>,
    path: &str,
) -> Result<(u16, T), Error> {
    let socket = socket.as_ref();
    let response = request(socket, "GET", path, None, None).await?;
    let value = serde_json::from_slice(&response.body).map_err(|e| Error::Http {
        path: socket.to_path_buf(),
        message: format!("{path} did not return the expected JSON: {e}"),
    })?;
    Ok((response.status, value))
}

/// POST a JSON value and return the response.
pub async fn post_json<T: serde::Serialize>(
    socket: impl AsRef<Path>,
    path: &str,
    value: &T,
) -> Result<Response, Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error::Http {
        path: socket.as_ref().to_path_buf(),
        message: format!("cannot encode the request body: {e}"),
    })?;
    request(socket, "POST", path, Some(body), Some("application/json")).await
}

async fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    content_type: Option<&str>,
) -> Result<Response, Error> {
    let http_err = |message: String| Error::Http {
        path: socket.to_path_buf(),
        message,
    };
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| Error::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_err(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| http_err(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http_err(e.to_string()))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| http_err(e.to_string()))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Binds a unix socket for a server: creates the parent directory, removes a stale socket file left by a
/// crashed predecessor (refusing to remove anything that is not a socket), binds, and sets `mode`.
pub fn bind_socket(path: impl AsRef<Path>, mode: u32) -> Result<UnixListener, Error> {
    use std::os::unix::fs::FileTypeExt;
    let path = path.as_ref();
    let bind_err = |source| Error::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(bind_err)?,
        Ok(_) => {
            return Err(bind_err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way; move it or choose another path",
            )))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_request_reaches_a_server_and_the_response_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/s.sock");
        let listener = bind_socket(&path, 0o660).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen);
                if text.contains("\r\n\r\n") && text.ends_with("{\"a\":1}") {
                    break;
                }
            }
            stream
                .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-k: v\r\n\r\nhello")
                .await
                .unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        let response = post_json(&path, "/x?y=1", &serde_json::json!({"a": 1}))
            .await
            .unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.text(), "hello");
        assert!(response.headers.contains(&("x-k".into(), "v".into())));
        let seen = server.await.unwrap();
        assert!(seen.starts_with("POST /x?y=1 HTTP/1.1\r\n"), "{seen}");
        assert!(seen
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
    }

    #[tokio::test]
    async fn errors_name_the_socket() {
        let err = request("/nonexistent/crossdock.sock", "GET", "/", None, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/crossdock.sock"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(bind_socket(&file, 0o600).is_err());
        assert!(file.exists(), "a non-socket file must never be removed");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = bind_socket(&path, 0o600).unwrap();
        let _hold = tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await
        });
        let err = request_with_timeout(&path, "GET", "/", None, None, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }));
    }
}
