//! How the command line talks to a running warden's API: its address from the data dir's
//! lock, a token from `WARDEN_TOKEN` or the file `WARDEN_TOKEN_FILE` names.

/// The API token to send, if the environment gives one.
pub fn token() -> Option<String> {
    if let Ok(t) = std::env::var("WARDEN_TOKEN")
        && !t.trim().is_empty()
    {
        return Some(t.trim().to_string());
    }
    let path = std::env::var_os("WARDEN_TOKEN_FILE")?;
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}
