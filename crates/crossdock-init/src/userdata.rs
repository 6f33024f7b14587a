//! Reads a file that a cloud-init user data writes (`write_files`), without a YAML library.
//!
//! Why: tests (the lab's fleet test boots hosts from `deploy/cloud-init/user-data.yaml`) need the
//! agent configuration that user data writes, and the workspace has no YAML parser. This reads the
//! subset the shipped file uses — a top-level `write_files:` list whose entries have `path:` and a
//! literal block `content: |` (also `|-`, `|+`) — and returns `None` for anything else, so a change
//! of shape fails a test instead of being misread. `tests/packaging.rs` checks it against
//! cloud-init's own YAML library.

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The lines of the top-level `write_files:` list.
fn write_files_block(user_data: &str) -> Option<Vec<&str>> {
    let mut lines = user_data.lines();
    lines.by_ref().find(|l| l.trim_end() == "write_files:")?;
    Some(
        lines
            .take_while(|l| is_blank_or_comment(l) || indent(l) > 0 || l.starts_with('-'))
            .collect(),
    )
}

/// Splits the list into entries: each starts at a `- ` line of the list's indentation.
fn entries<'a>(block: &[&'a str]) -> Vec<Vec<&'a str>> {
    let Some(first) = block.iter().find(|l| l.trim_start().starts_with("- ")) else {
        return Vec::new();
    };
    let dash = indent(first);
    let mut out: Vec<Vec<&str>> = Vec::new();
    for line in block {
        if indent(line) == dash && line.trim_start().starts_with("- ") {
            out.push(vec![line]);
        } else if let Some(cur) = out.last_mut() {
            cur.push(line);
        }
    }
    out
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| v.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .unwrap_or(v)
}

/// A literal block scalar starting after line `at` (whose key sits at `key_indent`).
fn literal_block(lines: &[&str], at: usize, key_indent: usize, chomp: &str) -> String {
    let body: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > key_indent)
        .copied()
        .collect();
    let block_indent = body
        .iter()
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| indent(l));
    let mut text: String = body
        .iter()
        .map(|l| format!("{}\n", l.get(block_indent..).unwrap_or("")))
        .collect();
    let trimmed_len = text.trim_end_matches('\n').len();
    match chomp {
        "|-" => text.truncate(trimmed_len),
        "|+" => {}
        _ => {
            text.truncate(trimmed_len);
            if trimmed_len > 0 {
                text.push('\n');
            }
        }
    }
    text
}

/// The `content` of the `write_files` entry whose `path` is `path`, if it is a literal block.
pub fn write_files_content(user_data: &str, path: &str) -> Option<String> {
    let block = write_files_block(user_data)?;
    for entry in entries(&block) {
        let key_indent = indent(entry[0]) + 2;
        // The entry's keys, the first one on the `- ` line itself.
        let keys: Vec<String> = entry
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    format!("{}{}", " ".repeat(key_indent), &l[key_indent..])
                } else {
                    l.to_string()
                }
            })
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let value = |name: &str| {
            keys.iter().enumerate().find_map(|(i, l)| {
                let rest = l
                    .strip_prefix(&" ".repeat(key_indent))?
                    .strip_prefix(name)?
                    .strip_prefix(':')?;
                (indent(l) == key_indent).then_some((i, rest.trim()))
            })
        };
        if value("path").map(|(_, v)| unquote(v)) != Some(path) {
            continue;
        }
        let (at, indicator) = value("content")?;
        return matches!(indicator, "|" | "|-" | "|+")
            .then(|| literal_block(&keys, at, key_indent, indicator));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "#cloud-config\npackages:\n  - curl\nwrite_files:\n  # a comment\n  - path: /etc/a.toml\n    permissions: '0600'\n    content: |\n      x = 1\n\n      [t]\n        y = \"z\"\n\n  - content: |-\n      first\n    path: '/etc/b'\n  - path: /etc/c\n    content: \"inline\"\nruncmd:\n  - [true]\n";

    #[test]
    fn reads_literal_blocks_by_path() {
        assert_eq!(
            write_files_content(SAMPLE, "/etc/a.toml").as_deref(),
            Some("x = 1\n\n[t]\n  y = \"z\"\n")
        );
        assert_eq!(
            write_files_content(SAMPLE, "/etc/b").as_deref(),
            Some("first")
        );
        // Shapes it does not read are not guessed at.
        assert_eq!(write_files_content(SAMPLE, "/etc/c"), None);
        assert_eq!(write_files_content(SAMPLE, "/etc/none"), None);
        assert_eq!(write_files_content("runcmd: []\n", "/etc/a.toml"), None);
    }

    #[test]
    fn the_shipped_user_data_writes_a_fleet_configuration() {
        let text = include_str!("../../../deploy/cloud-init/user-data.yaml");
        let toml = write_files_content(text, "/etc/crossdock/agent.toml")
            .expect("agent.toml in the user data");
        let cfg = crossdock_config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert_eq!(cfg.subnet.mode, crossdock_config::SubnetMode::Derived);
        assert_eq!(
            cfg.fleet.tag.map(|t| t.to_string()).as_deref(),
            Some("crossdock-cluster=prod")
        );
    }
}
