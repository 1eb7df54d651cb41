//! Who may call the API: tokens, stored only as SHA-256 hashes, each with a name and a
//! role. Roles are ordered: a viewer reads; an operator also acts on services; an approver
//! also decides approval requests; an admin may do everything.
//!
//! The token book is a YAML file (`tokens:` entries of `name`, `role`, `sha256`), checked
//! like every config file: every problem at once, with its line and column. A token is
//! never kept, logged or returned: only its hash is compared.

use crate::source::{self, Collector, Problems, Source};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A caller the book knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The SHA-256 of a token, as the book stores it (hex).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// The validated token book: hash → caller.
#[derive(Debug, Clone, Default)]
pub struct TokenBook {
    by_hash: HashMap<String, Caller>,
}

mod raw {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Book {
        #[serde(default)]
        pub tokens: Vec<Entry>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Entry {
        pub name: Spanned<String>,
        pub role: Role,
        pub sha256: Spanned<String>,
    }
}

/// One entry as written to the book.
#[derive(Debug, Clone, Serialize)]
pub struct BookEntry<'a> {
    pub name: &'a str,
    pub role: Role,
    pub sha256: String,
}

impl TokenBook {
    pub fn load(src: &Source<'_>) -> Result<Self, Problems> {
        let raw: raw::Book = source::parse(src)?;
        let mut c = Collector::new(src.name);
        let mut by_hash = HashMap::new();
        let mut names = std::collections::BTreeSet::new();
        for e in &raw.tokens {
            let name = e.name.value.trim();
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '@'));
            if !name_ok {
                c.at(e.name.referenced, format!("token name `{name}`: 1–64 letters, digits, `-`, `_`, `.`, `@`"));
                continue;
            }
            if name == "system" {
                c.at(e.name.referenced, "token name `system` is warden's own name in the audit trail");
                continue;
            }
            if !names.insert(name.to_string()) {
                c.at(e.name.referenced, format!("token name `{name}` is listed twice"));
                continue;
            }
            let hash = e.sha256.value.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.chars().all(|ch| ch.is_ascii_hexdigit()) {
                c.at(e.sha256.referenced, format!("`{name}`: sha256 must be 64 hex digits (the token's SHA-256)"));
                continue;
            }
            if by_hash.insert(hash, Caller { name: name.to_string(), role: e.role }).is_some() {
                c.at(e.sha256.referenced, format!("`{name}`: the same token as another entry"));
            }
        }
        c.finish(|| Self { by_hash })
    }

    /// The caller `token` belongs to.
    pub fn caller(&self, token: &str) -> Option<&Caller> {
        self.by_hash.get(&token_hash(token))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Whether a caller of this name exists (for approvers named in the policy).
    pub fn has(&self, name: &str) -> Option<Role> {
        self.by_hash.values().find(|c| c.name == name).map(|c| c.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(text: &str) -> Result<TokenBook, Problems> {
        TokenBook::load(&Source { name: "tokens.yaml", dir: Path::new("."), text })
    }

    #[test]
    fn test_roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Approver) && Role::Approver.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer) && !Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Approver));
    }

    #[test]
    fn test_a_token_finds_its_caller_by_hash_only() {
        let text = format!("tokens:\n  - name: alice\n    role: approver\n    sha256: {}\n", token_hash("s3cret"));
        let book = load(&text).expect("valid");
        assert_eq!(book.caller("s3cret"), Some(&Caller { name: "alice".into(), role: Role::Approver }));
        assert_eq!(book.caller("guess"), None);
        assert!(!text.contains("s3cret"), "the book holds no token");
    }

    #[test]
    fn test_every_mistake_of_a_book_is_named_with_its_line() {
        let h = token_hash("x");
        let text = format!(
            "tokens:\n  - name: 'bad name'\n    role: admin\n    sha256: {h}\n  - name: bob\n    role: viewer\n    sha256: nothex\n  - name: carol\n    role: admin\n    sha256: {h}\n  - name: dave\n    role: admin\n    sha256: {h}\n"
        );
        let err = load(&text).expect_err("three problems");
        let lines: Vec<u64> = err.list().iter().map(|p| p.pos.line).collect();
        assert_eq!(lines, vec![2, 7, 13], "{err}");
        assert!(load("tokens:\n  - name: e\n    role: root\n    sha256: x\n").is_err(), "an unknown role");
    }
}
