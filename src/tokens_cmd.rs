//! API tokens: `warden tokens add NAME --role ROLE` makes one and writes only its hash to
//! the token book; at the first start of a node whose book does not exist yet (the data
//! dir's default), an admin token is made the same way and its path printed.
//!
//! A token is 32 random bytes in hex with a `wdn_` prefix; it is shown once (printed, or
//! written to a 0600 file) and never stored: the book keeps its SHA-256.

use crate::load::NodeArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden_core::auth::{BookEntry, Role, TokenBook, token_hash};
use warden_core::source::Source;

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Make a token for NAME with ROLE, add its hash to the token book, print the token
    /// (once: it is not kept). A running warden takes it within a second.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Viewer,
    Operator,
    Approver,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Approver => Role::Approver,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// A new token: `wdn_` and 32 random bytes in hex.
pub fn new_token() -> String {
    format!("wdn_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// Appends `name` with `role` and the hash of `token` to the book at `path` (made 0600
/// when missing), refusing a name already there.
pub fn add_to_book(path: &Path, name: &str, role: Role, token: &str) -> anyhow::Result<TokenBook> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let label = path.display().to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    if !existing.trim().is_empty() {
        let book = TokenBook::load(&Source { name: &label, dir, text: &existing })?;
        if book.has(name).is_some() {
            anyhow::bail!("{label} already has a token named `{name}`");
        }
    }
    let entry = BookEntry { name, role, sha256: token_hash(token) };
    let item = serde_saphyr::to_string(&vec![entry])?;
    let text = if existing.trim().is_empty() {
        format!("# warden API tokens: only their SHA-256 is kept here.\ntokens:\n{}", indent(&item))
    } else {
        format!("{}\n{}", existing.trim_end(), indent(&item))
    };
    let book = TokenBook::load(&Source { name: &label, dir, text: &text })?;
    write_private(path, &text)?;
    Ok(book)
}

fn indent(yaml_list: &str) -> String {
    yaml_list.lines().map(|l| format!("  {l}\n")).collect()
}

/// The token book or a token file: 0600, written whole.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    warden_actors::private_file::write(path, text.as_bytes(), None)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The first start of a node without a token book: an admin token, its hash in the book,
/// the token itself in `admin.token` beside it (0600).
pub fn first_admin(book: &Path) -> anyhow::Result<(TokenBook, PathBuf)> {
    let token = new_token();
    let made = add_to_book(book, "admin", Role::Admin, &token)?;
    let token_file = book.with_file_name("admin.token");
    write_private(&token_file, &format!("{token}\n"))?;
    Ok((made, token_file))
}

pub fn run(cmd: TokensCommand) -> anyhow::Result<ExitCode> {
    let TokensCommand::Add { name, role, node } = cmd;
    let loaded = node.load().map_err(|p| anyhow::anyhow!("{p}"))?;
    let token = new_token();
    let path = &loaded.config.tokens.path;
    add_to_book(path, &name, role.into(), &token)?;
    eprintln!("added `{name}` ({}) to {}; the token (shown once):", Role::from(role).as_str(), path.display());
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
