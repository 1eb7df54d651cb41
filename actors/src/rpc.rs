//! Asking actors by name, so callers keep working across an actor's restart.

use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("actor `{0}` is not running")]
    NotRunning(String),
    #[error("actor `{0}` did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("actor `{0}` stopped before answering")]
    Dropped(String),
}

/// The actor registered under `name`, typed by its message.
pub fn lookup<M: ractor::Message>(name: &str) -> Result<ActorRef<M>, AskError> {
    ractor::registry::where_is(name).map(ActorRef::from).ok_or_else(|| AskError::NotRunning(name.to_string()))
}

/// Sends `make(reply)` to the actor named `name` and waits at most `timeout` for the reply.
pub async fn ask<M, T>(name: &str, timeout: Duration, make: impl FnOnce(RpcReplyPort<T>) -> M) -> Result<T, AskError>
where
    M: ractor::Message,
    T: Send + 'static,
{
    let actor = lookup::<M>(name)?;
    match actor.call(make, Some(timeout)).await {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(AskError::Timeout(name.to_string(), timeout)),
        Ok(CallResult::SenderError) | Err(_) => Err(AskError::Dropped(name.to_string())),
    }
}

/// Fire-and-forget to the actor named `name`.
pub fn tell<M: ractor::Message>(name: &str, msg: M) -> Result<(), AskError> {
    lookup::<M>(name)?.send_message(msg).map_err(|_| AskError::NotRunning(name.to_string()))
}

/// A task that is aborted when its owner (an actor's state) is dropped, so a crashed
/// actor leaves no background work behind.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
