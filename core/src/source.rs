//! Config documents and their problems: where a value was written, and every mistake of a
//! file reported at once with its `file:line:column`.
//!
//! Loaders read YAML into raw types whose checked fields are `Spanned`, then build the
//! validated types with a [`Collector`], which keeps going after the first problem so a user
//! sees all of them in one run (as `monit -t` and `nginx -t` do not, and users wish they did).

use serde::de::DeserializeOwned;
use serde_saphyr::Location;
use std::fmt;
use std::path::Path;

/// A config document: the name used in messages, the folder its relative paths are
/// resolved against, and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub text: &'a str,
}

/// A position in a named document (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One mistake at a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct Problem {
    pub pos: SourcePos,
    pub message: String,
}

/// Every mistake found in one or more documents, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl Problems {
    pub fn list(&self) -> &[Problem] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds another document's problems (for reporting several files at once).
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    /// A single problem without a position inside the document (e.g. it cannot be read).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Problems(vec![Problem { pos: SourcePos { file: file.into(), line: 1, column: 1 }, message: message.into() }])
    }
}

/// Collects problems while a document is checked.
#[derive(Debug)]
pub struct Collector {
    file: String,
    problems: Vec<Problem>,
}

impl Collector {
    pub fn new(file: &str) -> Self {
        Self { file: file.to_string(), problems: Vec::new() }
    }

    /// The position of `loc` in this document; unknown locations (defaults) read as 1:1.
    pub fn pos(&self, loc: Location) -> SourcePos {
        SourcePos { file: self.file.clone(), line: loc.line().max(1), column: loc.column().max(1) }
    }

    pub fn at(&mut self, loc: Location, message: impl Into<String>) {
        let pos = self.pos(loc);
        self.problems.push(Problem { pos, message: message.into() });
    }

    /// Runs `check`; its error becomes a problem at `loc`. Returns the value when it held.
    pub fn check<T, E: fmt::Display>(&mut self, loc: Location, check: Result<T, E>) -> Option<T> {
        match check {
            Ok(v) => Some(v),
            Err(e) => {
                self.at(loc, e.to_string());
                None
            }
        }
    }

    /// `value` when nothing was wrong, else every problem found, in the order they appear
    /// in the file.
    pub fn finish<T>(mut self, value: impl FnOnce() -> T) -> Result<T, Problems> {
        if self.problems.is_empty() {
            return Ok(value());
        }
        self.problems.sort_by_key(|p| (p.pos.line, p.pos.column));
        Err(Problems(self.problems))
    }
}

/// Parses a document as `T`: unknown keys, duplicate keys, wrong types and broken YAML are
/// one problem each, with their position (serde stops at the first of these).
pub fn parse<T: DeserializeOwned>(src: &Source<'_>) -> Result<T, Problems> {
    serde_saphyr::from_str::<T>(src.text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line().max(1), l.column().max(1))).unwrap_or((1, 1));
        Problems(vec![Problem {
            pos: SourcePos { file: src.name.to_string(), line, column },
            message: first_message_line(&e.to_string()),
        }])
    })
}

/// serde-saphyr renders `error: line L column C: message` followed by a source snippet;
/// we keep the message alone since the position is reported separately.
fn first_message_line(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.find(": ") {
        Some(i) if first.starts_with("line ") => first[i + 2..].to_string(),
        _ => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[expect(dead_code, reason = "only parsed")]
        a: u32,
    }

    fn src(text: &str) -> Source<'_> {
        Source { name: "f.yaml", dir: Path::new("."), text }
    }

    #[test]
    fn test_parse_unknown_key_names_line_and_column() {
        let err = parse::<Doc>(&src("a: 1\nbb: 2\n")).expect_err("unknown key must fail");
        let p = &err.list()[0];
        assert_eq!((p.pos.line, p.pos.column), (2, 1));
        assert!(p.message.contains("unknown field `bb`"), "{err}");
        assert!(err.to_string().starts_with("f.yaml:2:1: "), "{err}");
    }

    #[test]
    fn test_parse_wrong_type_names_position() {
        let err = parse::<Doc>(&src("a: nope\n")).expect_err("wrong type must fail");
        assert_eq!((err.list()[0].pos.line, err.list()[0].pos.column), (1, 4), "{err}");
    }

    #[test]
    fn test_parse_duplicate_key_is_refused() {
        let err = parse::<Doc>(&src("a: 1\na: 2\n")).expect_err("duplicate key must fail");
        assert_eq!(err.list()[0].pos.line, 2, "{err}");
    }

    #[test]
    fn test_problems_print_one_per_line_in_order() {
        let mut c = Collector::new("f.yaml");
        c.at(Location::UNKNOWN, "first");
        c.at(Location::UNKNOWN, "second");
        let err = c.finish(|| ()).expect_err("two problems");
        assert_eq!(err.to_string(), "f.yaml:1:1: first\nf.yaml:1:1: second");
    }
}
