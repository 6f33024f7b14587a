//! A string that must never reach a log line, a `Debug` dump, `/status` or an error message.
//!
//! AccessKey secrets and STS security tokens live in this type from the moment they are read (config,
//! environment, metadata response) until they are handed to the signer. Both `Debug` and `Display`
//! print `<redacted>`, so a stray `{:?}` on a struct holding one cannot leak it.

use std::fmt;

/// A secret value with redacting `Debug` and `Display`. Use [`Secret::expose`] only to sign.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&crossdock_config::Secret> for Secret {
    fn from(s: &crossdock_config::Secret) -> Self {
        Self::new(s.expose())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2-very-secret");
        assert_eq!(format!("{:?}", Secret::default()), "Secret(<empty>)");
    }
}
