//! Diagnosis from what a service said before it died: its last log lines, read against
//! patterns that name a cause.
//!
//! An exit status says little (PostgreSQL exits 1 on a corrupt control file and on a
//! typo in its config alike); the line it logged last says which. The built-in patterns
//! cover the messages of PostgreSQL, Redis and nginx that a repair depends on; a service
//! adds its own (`diagnose:` in its config), tried first. The newest matching line wins:
//! it is what the process said last.

use std::sync::LazyLock;

use regex::Regex;

use crate::diagnose::Cause;

/// A log line pattern and the cause a match names.
#[derive(Debug, Clone)]
pub struct LogPattern {
    pub regex: Regex,
    pub cause: Cause,
}

impl PartialEq for LogPattern {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str() && self.cause == other.cause
    }
}

impl Eq for LogPattern {}

impl LogPattern {
    /// `pattern` as a regular expression (case-insensitive), or why it is not one.
    pub fn new(pattern: &str, cause: Cause) -> Result<Self, regex::Error> {
        Ok(Self { regex: regex::RegexBuilder::new(pattern).case_insensitive(true).size_limit(1 << 20).build()?, cause })
    }
}

/// What the log said, and the line that said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFinding {
    pub cause: Cause,
    pub line: String,
}

/// The built-in patterns: (pattern, cause), by program.
const BUILT_IN: &[(&str, Cause)] = &[
    // PostgreSQL: its control file or WAL cannot be trusted, so it refuses to start.
    (r"incorrect checksum in control file", Cause::Corrupt),
    (r"could not locate a valid checkpoint record", Cause::Corrupt),
    (r"invalid (primary |secondary )?checkpoint record", Cause::Corrupt),
    (r#"could not (open|read) file "global/pg_control""#, Cause::Corrupt),
    (r"invalid page in block \d+ of relation", Cause::Corrupt),
    (r"database files are incompatible with server", Cause::Corrupt),
    (r#"lock file "postmaster\.pid" already exists"#, Cause::LockHeld),
    (r#"syntax error in file ".*\.conf""#, Cause::ConfigInvalid),
    (r#"configuration file ".*" contains errors"#, Cause::ConfigInvalid),
    (r#"could not open configuration file ".*": No such file"#, Cause::FileMissing),
    // Redis: a dump or append-only file that does not load.
    (r"Short read or OOM loading DB", Cause::Corrupt),
    (r"Wrong RDB checksum", Cause::Corrupt),
    (r"Bad file format reading the append only file", Cause::Corrupt),
    (r"Unexpected EOF reading RDB file", Cause::Corrupt),
    (r"FATAL CONFIG FILE ERROR", Cause::ConfigInvalid),
    (r"Fatal error, can't open config file .*No such file", Cause::FileMissing),
    // nginx: `[emerg]` lines at start.
    (r#"\[emerg\].*open\(\) ".*" failed \(2: No such file"#, Cause::FileMissing),
    (r"\[emerg\].*bind\(\) to .* failed \(98: Address already in use\)", Cause::PortStranger),
    (
        r"\[emerg\].*(unknown directive|directive is not allowed|invalid|unexpected|is not terminated|no .* section)",
        Cause::ConfigInvalid,
    ),
    // Any program.
    (r"Address already in use", Cause::PortStranger),
];

/// The built-in patterns, compiled once.
pub fn built_in() -> &'static [LogPattern] {
    static ALL: LazyLock<Vec<LogPattern>> =
        LazyLock::new(|| BUILT_IN.iter().filter_map(|(p, cause)| LogPattern::new(p, *cause).ok()).collect());
    &ALL
}

/// How many of the last lines are read: what a dying process says is at the end.
pub const TAIL_LINES: usize = 40;

/// The cause the newest matching line of `lines` names: `own` patterns first, then the
/// built-in ones.
pub fn classify<S: AsRef<str>>(lines: &[S], own: &[LogPattern]) -> Option<LogFinding> {
    lines.iter().rev().take(TAIL_LINES).find_map(|line| {
        let line = line.as_ref();
        own.iter()
            .chain(built_in())
            .find(|p| p.regex.is_match(line))
            .map(|p| LogFinding { cause: p.cause, line: line.trim().chars().take(300).collect() })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_every_built_in_pattern_compiles() {
        assert_eq!(built_in().len(), BUILT_IN.len());
    }

    #[test]
    fn test_real_messages_name_their_cause() {
        let cases = [
            ("2026-12-05 10:00:00.000 UTC [811] FATAL:  incorrect checksum in control file", Cause::Corrupt),
            ("2026-12-05 10:00:00 UTC [9] PANIC:  could not locate a valid checkpoint record", Cause::Corrupt),
            (r#"FATAL:  lock file "postmaster.pid" already exists"#, Cause::LockHeld),
            (r#"LOG:  syntax error in file "/srv/pg/postgresql.conf" line 3, near token "=""#, Cause::ConfigInvalid),
            (
                "1:M 05 Dec 2026 10:00:00.000 # Short read or OOM loading DB. Unrecoverable error, aborting now.",
                Cause::Corrupt,
            ),
            ("*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***", Cause::ConfigInvalid),
            (
                r#"2026/12/05 10:00:00 [emerg] 12#12: open() "/srv/nginx/nginx.conf" failed (2: No such file or directory)"#,
                Cause::FileMissing,
            ),
            (r#"nginx: [emerg] unknown directive "sever" in /srv/nginx/nginx.conf:3"#, Cause::ConfigInvalid),
            ("nginx: [emerg] bind() to 127.0.0.1:8080 failed (98: Address already in use)", Cause::PortStranger),
        ];
        for (line, cause) in cases {
            assert_eq!(classify(&[line], &[]).map(|f| f.cause), Some(cause), "{line}");
        }
        assert_eq!(classify(&["LOG:  database system is ready to accept connections"], &[]), None);
    }

    #[test]
    fn test_the_newest_line_wins_and_a_services_own_patterns_come_first() {
        let lines = ["nginx: [emerg] unknown directive \"x\"", "FATAL: incorrect checksum in control file"];
        assert_eq!(classify(&lines, &[]).map(|f| f.cause), Some(Cause::Corrupt), "the last line said it");
        let own = [LogPattern::new("checksum", Cause::CrashLoop).expect("pattern")];
        assert_eq!(classify(&lines, &own).map(|f| f.cause), Some(Cause::CrashLoop));
        // Only the tail is read.
        let mut long = vec!["FATAL: incorrect checksum in control file".to_string()];
        long.extend((0..TAIL_LINES).map(|i| format!("line {i}")));
        assert_eq!(classify(&long, &[]), None);
    }
}
