//! A string that must never reach a log line, a `Debug` dump, `/status` or an error message.
//!
//! AccessKey secrets and STS security tokens live in this type from the moment they are read (config,
//! environment, metadata response) until they are handed to the signer. It is the configuration crate's
//! [`crossdock_config::Secret`], so a secret read from the config file and one fetched from the metadata
//! service are the same type: `Debug` and `Display` never print the value, so a stray `{:?}` on a struct
//! holding one cannot leak it.

pub use crossdock_config::Secret;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
