//! Docker's `daemon.json`: read it, set `"bip"`, keep everything else, write it safely.
//!
//! Why so careful: the file belongs to the operator and to other tools (log drivers, registry
//! mirrors, cgroup settings), and a broken file stops Docker from starting at all. So every key other
//! than `"bip"` is kept byte for byte and in its place (a new `"bip"` goes last); the write is atomic
//! (a temporary file in the same directory, fsync, rename, fsync of the directory), the previous
//! version is kept as `<file>.crossdock-bak`, and a file that already says the right thing is not
//! touched at all, so that running `crossdock init` at every boot changes nothing.

use ipnet::Ipv4Net;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The suffix of the backup of a changed file.
pub const BACKUP_SUFFIX: &str = ".crossdock-bak";

/// The `"bip"` value for a subnet: its first host address (the bridge's) with the prefix,
/// e.g. `10.1.10.0/24` → `10.1.10.1/24`.
pub fn bip_for(subnet: Ipv4Net) -> String {
    let gateway = std::net::Ipv4Addr::from(u32::from(subnet.network()) + 1);
    format!("{gateway}/{}", subnet.prefix_len())
}

/// The top-level object of a daemon.json, entries in file order, values as written.
#[derive(Debug, Clone, Default)]
pub struct DaemonJson {
    entries: Vec<(String, Box<RawValue>)>,
}

struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<(String, Box<RawValue>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

impl DaemonJson {
    /// Parses the file's text; an empty (or all-whitespace) file is an empty object, as for Docker.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let entries = de.deserialize_map(Entries).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(Self { entries })
    }

    /// The value of `key` if it is a string.
    pub fn get_str(&self, key: &str) -> Option<String> {
        let raw = self.entries.iter().find(|(k, _)| k == key)?.1.get();
        serde_json::from_str::<String>(raw).ok()
    }

    /// Whether `key` is present (with any value).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// The keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// This file with `"bip"` set to `bip`: in place if present (later duplicates dropped), else last.
    pub fn with_bip(&self, bip: &str) -> Self {
        self.with_value("bip", &serde_json::Value::from(bip))
    }

    /// The value of `key`, parsed (`None` when absent or not JSON).
    pub fn get_value(&self, key: &str) -> Option<serde_json::Value> {
        let raw = self.entries.iter().find(|(k, _)| k == key)?.1.get();
        serde_json::from_str(raw).ok()
    }

    /// This file with `key` set to `value`: in place if present (later duplicates dropped), else
    /// last; every other entry as it was written.
    // A `serde_json::Value` prints as valid JSON: `RawValue::from_string` cannot refuse it.
    #[allow(clippy::expect_used)]
    pub fn with_value(&self, key: &str, value: &serde_json::Value) -> Self {
        let value = RawValue::from_string(value.to_string()).expect("a JSON value is valid JSON");
        let mut entries = Vec::with_capacity(self.entries.len() + 1);
        let mut placed = false;
        for (k, v) in &self.entries {
            if k != key {
                entries.push((k.clone(), v.clone()));
            } else if !placed {
                entries.push((k.clone(), value.clone()));
                placed = true;
            }
        }
        if !placed {
            entries.push((key.into(), value));
        }
        Self { entries }
    }

    /// The file's text: one key per line, two spaces of indent, values as they were written.
    pub fn render(&self) -> String {
        if self.entries.is_empty() {
            return "{}\n".into();
        }
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|(k, v)| format!("  {}: {}", serde_json::Value::from(k.as_str()), v.get()))
            .collect();
        format!("{{\n{}\n}}\n", lines.join(",\n"))
    }
}

/// Checks the other keys that decide docker0's address: `"bridge"` (Docker refuses it together
/// with `"bip"`) and `"fixed-cidr"` (must lie inside the subnet). Returns the problem and its fix.
pub fn conflicts(file: &DaemonJson, subnet: Ipv4Net) -> Option<String> {
    if file.has("bridge") {
        return Some(format!(
            "it sets \"bridge\" (a bridge device of its own), which Docker refuses together with \"bip\" (fix: remove \"bridge\" so that docker0 gets {subnet}, or keep per-host mode: [subnet] mode = \"docker\")"
        ));
    }
    if let Some(fixed) = file.get_str("fixed-cidr") {
        let inside = fixed.parse::<Ipv4Net>().is_ok_and(|f| subnet.contains(&f));
        if !inside {
            return Some(format!(
                "its \"fixed-cidr\" {fixed} is not inside the derived subnet {subnet}, so Docker would not start (fix: remove \"fixed-cidr\" or set it inside {subnet})"
            ));
        }
    }
    None
}

/// The backup path of `path`: `<path>.crossdock-bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory with `mode`,
/// fsync, rename over `path`, fsync of the directory. The directory is created if missing.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or("daemon.json".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.crossdock-tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() is filtered by the umask; set it exactly.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The file already said this; nothing was written.
    Unchanged,
    /// The file was written; `backup` holds the previous version, if there was one.
    Written { backup: Option<PathBuf> },
}

/// Makes `path` hold `new_text`: nothing when it already does, else a backup of the existing file
/// (same mode) and an atomic write keeping the existing file's mode (0644 for a new file).
pub fn apply(path: &Path, old: Option<&[u8]>, new_text: &str) -> std::io::Result<Applied> {
    use std::os::unix::fs::PermissionsExt;
    if old == Some(new_text.as_bytes()) {
        return Ok(Applied::Unchanged);
    }
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let backup = match old {
        Some(bytes) => {
            let b = backup_path(path);
            write_atomically(&b, bytes, mode)?;
            Some(b)
        }
        None => None,
    };
    write_atomically(path, new_text.as_bytes(), mode)?;
    Ok(Applied::Written { backup })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const EXISTING: &str = r#"{
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"},
  "bip": "172.17.0.1/16",
  "registry-mirrors": ["https://mirror.example"],
  "live-restore": true
}
"#;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn bip_is_the_first_address_with_the_prefix() {
        assert_eq!(bip_for(net("10.1.10.0/24")), "10.1.10.1/24");
        assert_eq!(bip_for(net("172.16.4.64/26")), "172.16.4.65/26");
    }

    #[test]
    fn setting_bip_keeps_every_other_key_in_place_byte_for_byte() {
        let f = DaemonJson::parse(EXISTING).unwrap();
        let out = f.with_bip("10.1.10.1/24").render();
        assert_eq!(
            out,
            "{\n  \"log-driver\": \"json-file\",\n  \"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"},\n  \"bip\": \"10.1.10.1/24\",\n  \"registry-mirrors\": [\"https://mirror.example\"],\n  \"live-restore\": true\n}\n"
        );
        // Still JSON, same keys and values apart from bip.
        let before: serde_json::Value = serde_json::from_str(EXISTING).unwrap();
        let mut after: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(after["bip"], "10.1.10.1/24");
        after["bip"] = before["bip"].clone();
        assert_eq!(after, before);
    }

    #[test]
    fn a_new_bip_goes_last_and_an_empty_file_is_an_empty_object() {
        let f = DaemonJson::parse("{\"debug\": true}").unwrap();
        let keys: Vec<String> = DaemonJson::parse(&f.with_bip("10.0.0.1/24").render())
            .unwrap()
            .keys()
            .map(String::from)
            .collect();
        assert_eq!(keys, ["debug", "bip"]);
        for empty in ["", "  \n", "{}"] {
            let f = DaemonJson::parse(empty).unwrap();
            assert_eq!(f.render(), "{}\n");
            assert_eq!(
                f.with_bip("10.0.0.1/24").render(),
                "{\n  \"bip\": \"10.0.0.1/24\"\n}\n"
            );
        }
    }

    #[test]
    fn duplicate_bips_collapse_into_the_first() {
        let f = DaemonJson::parse(r#"{"bip": "1.1.1.1/24", "x": 1, "bip": "2.2.2.1/24"}"#).unwrap();
        assert_eq!(
            f.with_bip("10.0.0.1/24").render(),
            "{\n  \"bip\": \"10.0.0.1/24\",\n  \"x\": 1\n}\n"
        );
    }

    #[test]
    fn broken_files_are_refused() {
        for bad in ["{", "[]", "\"bip\"", "{\"a\": 1} {}", "{\"a\": }", "null"] {
            assert!(DaemonJson::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn conflicting_keys_are_named_with_the_fix() {
        let s = net("10.1.10.0/24");
        assert_eq!(conflicts(&DaemonJson::parse(EXISTING).unwrap(), s), None);
        let e = conflicts(&DaemonJson::parse(r#"{"bridge": "br0"}"#).unwrap(), s).unwrap();
        assert!(e.contains("\"bridge\"") && e.contains("fix:"), "{e}");
        let ok = DaemonJson::parse(r#"{"fixed-cidr": "10.1.10.128/25"}"#).unwrap();
        assert_eq!(conflicts(&ok, s), None);
        let e = conflicts(
            &DaemonJson::parse(r#"{"fixed-cidr": "172.17.0.0/17"}"#).unwrap(),
            s,
        )
        .unwrap();
        assert!(
            e.contains("172.17.0.0/17") && e.contains("10.1.10.0/24"),
            "{e}"
        );
    }

    #[test]
    fn apply_writes_backs_up_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        std::fs::write(&path, EXISTING).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let new = DaemonJson::parse(EXISTING)
            .unwrap()
            .with_bip("10.1.10.1/24")
            .render();

        let got = apply(&path, Some(EXISTING.as_bytes()), &new).unwrap();
        let backup = backup_path(&path);
        assert_eq!(
            got,
            Applied::Written {
                backup: Some(backup.clone())
            }
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), EXISTING);
        for p in [&path, &backup] {
            assert_eq!(
                std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
                0o600,
                "{p:?}"
            );
        }
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();

        // Second run: the file already says it; nothing is written, the backup stays the original.
        let got = apply(&path, Some(new.as_bytes()), &new).unwrap();
        assert_eq!(got, Applied::Unchanged);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), EXISTING);
        // No temporary file left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_missing_file_and_directory_are_created_without_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc-docker").join("daemon.json");
        let got = apply(&path, None, "{}\n").unwrap();
        assert_eq!(got, Applied::Written { backup: None });
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(!backup_path(&path).exists());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: rename() fails after the temporary file was written.
        let path = dir.path().join("daemon.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        assert!(write_atomically(&path, b"{}", 0o644).is_err());
        assert!(path.join("keep").exists());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["daemon.json"], "temporary file left behind");
    }
}
