//! YAML loading with errors that name file, line and column.

use serde::de::DeserializeOwned;
use std::fmt;

/// A position in a named source file (1-based line and column).
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

/// A YAML document that could not be read as the expected type.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct YamlError {
    pub pos: SourcePos,
    pub message: String,
}

/// Parses `text` (read from `file`) as `T`, unknown keys, wrong types and broken YAML
/// all reported with their line and column.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        YamlError {
            pos: SourcePos { file: file.to_string(), line, column },
            message: first_message_line(&e.to_string()),
        }
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
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn test_parse_unknown_key_names_line_and_column() {
        let err = parse::<Doc>("f.yaml", "a: 1\nbb: 2\n").expect_err("unknown key must fail");
        assert_eq!(err.pos.line, 2);
        assert_eq!(err.pos.column, 1);
        assert!(err.message.contains("unknown field `bb`"), "{err}");
        assert!(err.to_string().starts_with("f.yaml:2:1: "), "{err}");
    }

    #[test]
    fn test_parse_wrong_type_names_position() {
        let err = parse::<Doc>("f.yaml", "a: nope\n").expect_err("wrong type must fail");
        assert_eq!((err.pos.line, err.pos.column), (1, 4), "{err}");
    }

    #[test]
    fn test_parse_broken_yaml_names_position() {
        let err = parse::<Doc>("f.yaml", "a: [1,\n").expect_err("broken yaml must fail");
        assert_eq!(err.pos.file, "f.yaml");
        assert!(err.pos.line >= 1);
    }
}
