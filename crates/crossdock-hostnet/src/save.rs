//! The `iptables-save` format as data: the one parser of the workspace, used by the iptables driver
//! (to read a table before planning a transaction) and by `crossdock doctor` (a snapshot of every
//! table with counters, walked and compared before and after a probe).
//!
//! Why the save format rather than `iptables -S` or `-C` rule by rule: one dump is a consistent
//! snapshot of a table, it keeps rule *positions* (a rule that exists but sits behind Docker's
//! MASQUERADE is the commonest breakage), it carries counters with `-c`, and it is the text
//! `iptables-restore` reads back, so what is read and what is written share one syntax.
//! Rules are kept as the argument words after `-A <chain>`, unquoted, in the order iptables prints
//! them, so a rule read back compares equal, word for word, to the one crossdock asked for.

use std::collections::BTreeMap;

/// Packet and byte counters (`[packets:bytes]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// One rule: the arguments after `-A <chain>`, and its counters when the dump was taken with `-c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRule {
    pub args: Vec<String>,
    pub counters: Option<Counters>,
}

impl SavedRule {
    /// A rule without counters.
    pub fn new(args: Vec<String>) -> Self {
        Self {
            args,
            counters: None,
        }
    }

    /// The rule as `iptables -S` prints it (quoting arguments with spaces).
    pub fn text(&self) -> String {
        crate::command::join_quoted(&self.args)
    }

    /// The `-j` / `-g` target.
    pub fn target_name(&self) -> Option<String> {
        jump_target(&self.args).map(str::to_string)
    }
}

/// The `-j` / `-g` target of a rule specification.
pub fn jump_target(args: &[String]) -> Option<&str> {
    args.windows(2)
        .find(|w| matches!(w[0].as_str(), "-j" | "--jump" | "-g" | "--goto"))
        .map(|w| w[1].as_str())
}

/// One chain: its policy (built-in chains only) and its rules in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub policy: Option<String>,
    pub policy_counters: Option<Counters>,
    pub rules: Vec<SavedRule>,
}

impl Chain {
    /// 0-based position of the first rule whose arguments equal `args`.
    pub fn position(&self, args: &[String]) -> Option<usize> {
        self.rules.iter().position(|r| r.args == args)
    }

    /// Whether this is a built-in chain (it has a policy).
    pub fn is_builtin(&self) -> bool {
        self.policy.is_some()
    }
}

/// One table of a dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedTable {
    pub chains: BTreeMap<String, Chain>,
}

impl SavedTable {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.get(name)
    }
}

/// A whole `iptables-save` dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// The generator line, e.g. `iptables-save v1.8.9 (nf_tables)`.
    pub generator: Option<String>,
    /// Warnings iptables printed as comments (e.g. legacy tables present beside nft ones).
    pub warnings: Vec<String>,
    pub tables: BTreeMap<String, SavedTable>,
}

/// A line of the dump that is not in the save format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("iptables-save output, line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn parse_counters(s: &str) -> Option<Counters> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    Some(Counters {
        packets: p.parse().ok()?,
        bytes: b.parse().ok()?,
    })
}

impl Ruleset {
    /// Parses `iptables-save` (with or without `-c`) output of any number of tables.
    pub fn parse(text: &str) -> Result<Ruleset, ParseError> {
        let mut set = Ruleset::default();
        let mut current: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                set.comment(comment.trim());
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                set.tables.entry(name.to_string()).or_default();
                current = Some(name.to_string());
                continue;
            }
            if line == "COMMIT" {
                current = None;
                continue;
            }
            let err = |message: String| ParseError {
                line: n + 1,
                message,
            };
            let Some(table_name) = current.as_deref() else {
                return Err(err(format!(
                    "`{line}` outside a table (no `*table` line before it)"
                )));
            };
            let table = set.tables.entry(table_name.to_string()).or_default();
            parse_table_line(table, line).map_err(err)?;
        }
        Ok(set)
    }

    fn comment(&mut self, comment: &str) {
        if let Some(rest) = comment.strip_prefix("Generated by ") {
            let generator = rest.split(" on ").next().unwrap_or(rest);
            self.generator = Some(generator.to_string());
        } else if comment.to_ascii_lowercase().starts_with("warning") {
            self.warnings.push(comment.to_string());
        }
    }

    /// A table; one absent from the dump (iptables-save omits tables nothing has used, e.g. raw on
    /// Docker 20.10) is returned empty, which is what the kernel applies: nothing.
    pub fn table(&self, name: &str) -> &SavedTable {
        static EMPTY: SavedTable = SavedTable {
            chains: BTreeMap::new(),
        };
        self.tables.get(name).unwrap_or(&EMPTY)
    }

    /// `nf_tables` or `legacy`, from the generator line.
    pub fn backend(&self) -> Option<&str> {
        let g = self.generator.as_deref()?;
        let open = g.rfind('(')?;
        g[open + 1..].strip_suffix(')')
    }
}

/// One line inside a `*table` … `COMMIT` block: a chain declaration or a rule.
fn parse_table_line(table: &mut SavedTable, line: &str) -> Result<(), String> {
    if let Some(decl) = line.strip_prefix(':') {
        let mut parts = decl.split_whitespace();
        let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
            return Err(format!("chain declaration `{line}` lacks a policy"));
        };
        let chain = table.chains.entry(name.to_string()).or_default();
        if policy != "-" {
            chain.policy = Some(policy.to_string());
            chain.policy_counters = parts.next().and_then(parse_counters);
        }
        return Ok(());
    }
    let (counters, rest) = if line.starts_with('[') {
        let end = line
            .find(']')
            .ok_or_else(|| format!("unterminated counters in `{line}`"))?;
        let c = parse_counters(&line[..=end])
            .ok_or_else(|| format!("bad counters `{}`", &line[..=end]))?;
        (Some(c), line[end + 1..].trim_start())
    } else {
        (None, line)
    };
    let mut args = split_save_line(rest);
    if args.len() < 2 || args[0] != "-A" {
        return Err(format!("expected `-A <chain> ...`, got `{line}`"));
    }
    let chain = args[1].clone();
    args.drain(..2);
    table
        .chains
        .entry(chain)
        .or_default()
        .rules
        .push(SavedRule { args, counters });
    Ok(())
}

/// Splits one rule line of the save format into words, honouring double quotes and backslash
/// escapes inside them (comments are printed quoted).
pub fn split_save_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Fri Dec  4 23:11:59 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [5:420]
:DOCKER-USER - [0:0]
:CROSSDOCK-FORWARD - [0:0]
[1:84] -A FORWARD -j DOCKER-USER
-A DOCKER-USER -m comment --comment "crossdock:jump" -j CROSSDOCK-FORWARD
-A DOCKER-USER -j RETURN
COMMIT
# Completed on Fri Dec  4 23:11:59 2026
*raw
:PREROUTING ACCEPT [0:0]
COMMIT
"#;

    #[test]
    fn parses_chains_policies_rules_and_counters() {
        let rs = Ruleset::parse(DUMP).unwrap();
        assert_eq!(rs.backend(), Some("nf_tables"));
        let filter = rs.table("filter");
        let fwd = filter.chain("FORWARD").unwrap();
        assert_eq!(fwd.policy.as_deref(), Some("DROP"));
        assert_eq!(
            fwd.policy_counters,
            Some(Counters {
                packets: 5,
                bytes: 420
            })
        );
        assert_eq!(
            fwd.rules[0],
            SavedRule {
                args: vec!["-j".into(), "DOCKER-USER".into()],
                counters: Some(Counters {
                    packets: 1,
                    bytes: 84
                }),
            }
        );
        let user = filter.chain("DOCKER-USER").unwrap();
        assert!(!user.is_builtin());
        assert_eq!(user.rules[0].args[3], "crossdock:jump", "quotes removed");
        assert_eq!(
            user.rules[0].target_name().as_deref(),
            Some("CROSSDOCK-FORWARD")
        );
        assert_eq!(
            user.rules[0].text(),
            "-m comment --comment crossdock:jump -j CROSSDOCK-FORWARD"
        );
        assert_eq!(filter.chain("CROSSDOCK-FORWARD"), Some(&Chain::default()));
        assert!(rs
            .table("raw")
            .chain("PREROUTING")
            .unwrap()
            .rules
            .is_empty());
        assert!(
            rs.table("nat").chains.is_empty(),
            "absent tables read empty"
        );
    }

    #[test]
    fn malformed_dumps_name_the_line() {
        let e = Ruleset::parse("-A FORWARD -j ACCEPT\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().contains("outside a table"));
        let e = Ruleset::parse("*filter\n:FORWARD DROP [0:0]\n[x:1] -A FORWARD -j ACCEPT\n")
            .unwrap_err();
        assert_eq!(e.line, 3);
        let e = Ruleset::parse("*filter\n-I FORWARD -j ACCEPT\n").unwrap_err();
        assert!(e.message.contains("expected `-A"));
        let rs = Ruleset::parse("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").unwrap();
        assert_eq!(rs.warnings.len(), 1);
        assert_eq!(rs.generator, None);
    }

    #[test]
    fn save_lines_split_like_iptables_prints_them() {
        let line = r#"-A CROSSDOCK-FORWARD -s 10.0.0.0/8 -d 10.1.0.0/24 -o docker0 -m comment --comment "crossdock:cluster-to-containers" -j ACCEPT"#;
        let got = split_save_line(line);
        assert_eq!(got[0], "-A");
        assert_eq!(got[11], "crossdock:cluster-to-containers");
        let spaced = split_save_line(r#"-A X -m comment --comment "a \"quoted\" word" -j DROP"#);
        assert_eq!(spaced[5], "a \"quoted\" word");
        assert_eq!(spaced.len(), 8);
        assert_eq!(split_save_line(r#"-A X --comment """#)[3], "");
    }
}
