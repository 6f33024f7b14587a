//! The state file: one JSON document, replaced atomically (write a temporary file beside it, fsync,
//! rename), so a crash leaves either the old or the new state and never half of one.

use crate::model::{State, STATE_VERSION};
use anyhow::Context as _;
use std::io::Write;
use std::path::Path;

pub fn load(path: &Path) -> anyhow::Result<State> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read the emulator state file {}", path.display()))?;
    let state: State = serde_json::from_slice(&text).with_context(|| {
        format!(
            "the emulator state file {} is not valid (remove it to start a fresh VPC)",
            path.display()
        )
    })?;
    if state.version != STATE_VERSION {
        anyhow::bail!(
            "the emulator state file {} has format version {}, this emulator reads {} (remove it to start a fresh VPC)",
            path.display(),
            state.version,
            STATE_VERSION
        );
    }
    Ok(state)
}

pub fn save(path: &Path, state: &State) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(state)?)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Bootstrap;

    #[test]
    fn state_round_trips_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        let s = State::bootstrap(&Bootstrap::default());
        save(&p, &s).unwrap();
        assert_eq!(load(&p).unwrap(), s);
        assert!(!dir.path().join("sub/state.json.tmp").exists());
        std::fs::write(&p, b"{").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("not valid"), "{e}");
    }
}
