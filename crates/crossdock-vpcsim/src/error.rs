//! Alibaba-style API errors: a code, a message and the HTTP status the real service uses for it.

use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// Extra response headers (rate-limit hints).
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            headers: vec![],
        }
    }

    pub fn bad(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    pub fn missing(param: &str) -> Self {
        Self::bad(
            "MissingParameter",
            format!("The input parameter \"{param}\" that is mandatory for processing this request is not supplied."),
        )
    }

    pub fn invalid(param: &str, why: impl std::fmt::Display) -> Self {
        Self::bad(
            "InvalidParameter",
            format!("The specified parameter \"{param}\" is not valid: {why}"),
        )
    }

    /// The error an injected fault with this code produces (status chosen like the real service's).
    pub fn injected(code: &str) -> Self {
        match code {
            "ServiceUnavailable" => Self::service_unavailable(),
            "InternalError" => Self::new(
                500,
                code,
                "The request processing has failed due to some unknown error.",
            ),
            "TaskConflict" => Self::task_conflict(),
            "Throttling" | "Throttling.User" | "Throttling.Api" => {
                Self::bad(code, "Request was denied due to user flow control.")
            }
            other => Self::bad(other, "Injected fault."),
        }
    }

    pub fn service_unavailable() -> Self {
        Self::new(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        )
    }

    pub fn task_conflict() -> Self {
        Self::bad(
            "TaskConflict",
            "The operation is too frequent, another route table task is in progress. Please wait and try again.",
        )
    }

    pub fn incorrect_route_status(detail: impl std::fmt::Display) -> Self {
        Self::bad(
            "IncorrectRouteEntryStatus",
            format!(
                "The current status of the route entry does not support this operation: {detail}"
            ),
        )
    }

    /// The JSON body Alibaba returns with an error.
    pub fn body(&self, request_id: &str, host_id: &str, product: &str) -> serde_json::Value {
        json!({
            "RequestId": request_id,
            "HostId": host_id,
            "Code": self.code,
            "Message": self.message,
            "Recommend": format!(
                "https://api.aliyun.com/troubleshoot?q={}&product={product}&requestId={request_id}",
                self.code
            ),
        })
    }
}
