//! DNS labels and the zone name, and how container, service and host names become labels.
//!
//! Docker names allow `_` and `.`, Compose service names allow upper case, hostnames may be long:
//! none of that is a valid DNS label. Every name that enters the zone goes through
//! [`Label::sanitize`], one documented rule, so every host computes the same label for the same
//! name:
//!
//! 1. ASCII letters are lower-cased; `a-z` and `0-9` are kept;
//! 2. every other character (`_`, `.`, spaces, anything non-ASCII) becomes `-`;
//! 3. runs of `-` collapse to one, leading and trailing `-` are dropped;
//! 4. the result is cut to 63 characters (and a trailing `-` dropped again);
//! 5. nothing left: the name is not published.
//!
//! Two different names may sanitise to the same label (`Web_1` and `web-1`). For the fleet name
//! `<name>.<zone>` that is harmless: it is a set of addresses anyway. For a container's own name
//! `<container>.<host>.<zone>`, which must be one container, [`Label::disambiguated`] gives every
//! colliding container but the first (in byte order of the original names) the label with `-` and
//! six hex digits of the SHA-256 of its original name appended, the base cut so the whole stays
//! within 63 characters. The suffix depends only on the name, so it is stable across restarts.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest DNS label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Longest zone name: `<container>.<host>.` in front of it must still fit in 253 characters.
pub const MAX_ZONE_LEN: usize = 253 - 2 * (MAX_LABEL_LEN + 1);

/// The default zone.
pub const DEFAULT_ZONE: &str = "crossdock.internal";

/// A name that is not a valid label or zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not 1..=63 characters of `a-z`, `0-9`, `-`, not starting or ending with `-`.
    #[error("`{0}` is not a DNS label (1 to 63 characters of a-z, 0-9 and `-`, not starting or ending with `-`)")]
    Label(String),
    /// A zone whose labels are not all valid, or that is too long.
    #[error("`{0}` is not a usable zone name (dot-separated DNS labels, at most {MAX_ZONE_LEN} characters; fix: e.g. `crossdock.internal`)")]
    Zone(String),
}

/// One valid, lower-case DNS label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl Label {
    /// Accepts a label that is already valid (no sanitising).
    pub fn new(s: &str) -> Result<Self, NameError> {
        let ok = (1..=MAX_LABEL_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(NameError::Label(s.to_string()))
        }
    }

    /// Turns any name into a label by the module's rule; `None` when nothing usable is left.
    pub fn sanitize(raw: &str) -> Option<Self> {
        let mut out = String::with_capacity(raw.len().min(MAX_LABEL_LEN));
        for c in raw.chars() {
            let c = c.to_ascii_lowercase();
            let keep = c.is_ascii_lowercase() || c.is_ascii_digit();
            if keep {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        Self::trimmed(out)
    }

    fn trimmed(mut s: String) -> Option<Self> {
        s.truncate(MAX_LABEL_LEN);
        while s.ends_with('-') {
            s.pop();
        }
        (!s.is_empty()).then_some(Self(s))
    }

    /// This label made unique for `original` (see the module documentation).
    pub fn disambiguated(&self, original: &str) -> Self {
        let digest = Sha256::digest(original.as_bytes());
        let suffix: String = digest[..3].iter().map(|b| format!("{b:02x}")).collect();
        let mut base = self.0.clone();
        base.truncate(MAX_LABEL_LEN - suffix.len() - 1);
        while base.ends_with('-') {
            base.pop();
        }
        Self(format!("{base}-{suffix}"))
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Label {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> Self {
        l.0
    }
}

/// The zone the names live in, lower case, without the trailing dot (`crossdock.internal`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZoneName {
    text: String,
    labels: Vec<Label>,
}

impl ZoneName {
    /// Parses `crossdock.internal` (case-insensitive, a trailing dot allowed).
    pub fn new(s: &str) -> Result<Self, NameError> {
        let text = s.trim_end_matches('.').to_ascii_lowercase();
        let bad = || NameError::Zone(s.to_string());
        if text.is_empty() || text.len() > MAX_ZONE_LEN {
            return Err(bad());
        }
        let labels = text
            .split('.')
            .map(Label::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        Ok(Self { text, labels })
    }

    /// The zone's labels, left to right.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The zone without the trailing dot.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `<labels...>.<zone>.` as a fully qualified name.
    pub fn fqdn(&self, labels: &[&Label]) -> String {
        let mut s = String::new();
        for l in labels {
            s.push_str(l.as_str());
            s.push('.');
        }
        s.push_str(&self.text);
        s.push('.');
        s
    }
}

impl Default for ZoneName {
    // A constant the unit tests parse: `new` cannot refuse it.
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        Self::new(DEFAULT_ZONE).expect("the default zone is valid")
    }
}

impl std::fmt::Display for ZoneName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for ZoneName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<ZoneName> for String {
    fn from(z: ZoneName) -> Self {
        z.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(raw: &str) -> Option<String> {
        Label::sanitize(raw).map(String::from)
    }

    #[test]
    fn sanitising_lowercases_and_replaces_what_dns_does_not_allow() {
        assert_eq!(s("Web_1").as_deref(), Some("web-1"));
        assert_eq!(s("my.app__db").as_deref(), Some("my-app-db"));
        assert_eq!(s("--x--").as_deref(), Some("x"));
        assert_eq!(s("ça va").as_deref(), Some("a-va"));
        assert_eq!(s("___"), None);
        assert_eq!(s(""), None);
    }

    #[test]
    fn sanitising_cuts_to_63_without_a_trailing_dash() {
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let l = Label::sanitize(&long).unwrap();
        assert_eq!(l.as_str(), "a".repeat(62));
        assert_eq!(
            Label::sanitize(&"x".repeat(100)).unwrap().as_str().len(),
            63
        );
    }

    #[test]
    fn strict_labels_refuse_what_sanitising_would_change() {
        assert!(Label::new("web-1").is_ok());
        for bad in ["Web", "-a", "a-", "", "a_b", &"a".repeat(64)] {
            assert!(Label::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn disambiguation_is_stable_distinct_and_fits() {
        let base = Label::sanitize("web_1").unwrap();
        let a = base.disambiguated("web_1");
        let b = base.disambiguated("Web-1");
        assert_ne!(a, b);
        assert_eq!(a, base.disambiguated("web_1"));
        assert!(a.as_str().starts_with("web-1-") && a.as_str().len() == "web-1-".len() + 6);
        let long = Label::sanitize(&"z".repeat(63)).unwrap().disambiguated("x");
        assert!(Label::new(long.as_str()).is_ok() && long.as_str().len() == 63);
    }

    #[test]
    fn zone_names_are_validated_and_normalised() {
        let z = ZoneName::new("Crossdock.Internal.").unwrap();
        assert_eq!(z.as_str(), "crossdock.internal");
        assert_eq!(z, ZoneName::default());
        let web = Label::new("web").unwrap();
        assert_eq!(z.fqdn(&[&web]), "web.crossdock.internal.");
        assert!(ZoneName::new("bad_zone").is_err());
        assert!(ZoneName::new("").is_err());
        assert!(ZoneName::new(&"a.".repeat(70)).is_err());
    }
}
