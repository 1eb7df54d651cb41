//! Typed addresses: an actor's registered name tied to its kind, so a send is checked by the
//! compiler and still reaches the actor after a restart.
//!
//! An [`Addr<A>`] holds the name an actor of kind `A` is registered under and looks it up
//! at send time: a restarted actor (a fresh `ActorRef` under the same name) is found again.
//! Each actor module makes its addresses (`Addr::<Gatekeeper>::at()`) and gives them the
//! methods its callers use (`gate.request(req)`), so a reader can follow a message from
//! the sender to the handler with go-to-definition. Errors say whether the actor was not
//! running, did not answer in time, or failed before answering.

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Why a message did not get through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("actor `{actor}` is not running")]
    NotRunning { actor: String },
    #[error("actor `{actor}` did not answer within {after:?}")]
    TimedOut { actor: String, after: Duration },
    #[error("actor `{actor}` failed before answering")]
    Failed { actor: String },
}

/// The address of an actor of kind `A`.
pub struct Addr<A> {
    name: Arc<str>,
    _kind: PhantomData<fn() -> A>,
}

impl<A> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), _kind: PhantomData }
    }
}

impl<A> fmt::Debug for Addr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({})", self.name)
    }
}

impl<A: Actor> Addr<A> {
    /// Only actor modules make addresses, each for its own kind and path.
    pub(crate) fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), _kind: PhantomData }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn actor(&self) -> Result<ActorRef<A::Msg>, SendError> {
        ractor::registry::where_is(&self.name)
            .map(ActorRef::from)
            .ok_or_else(|| SendError::NotRunning { actor: self.name.to_string() })
    }

    /// Fire and forget.
    pub fn tell(&self, msg: A::Msg) -> Result<(), SendError> {
        self.actor()?.send_message(msg).map_err(|_| SendError::NotRunning { actor: self.name.to_string() })
    }

    /// Sends `make(reply)` and waits at most `timeout` for the reply.
    pub async fn ask<T: Send + 'static>(
        &self,
        timeout: Duration,
        make: impl FnOnce(RpcReplyPort<T>) -> A::Msg,
    ) -> Result<T, SendError> {
        let actor = self.actor()?;
        match actor.call(make, Some(timeout)).await {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(CallResult::Timeout) => Err(SendError::TimedOut { actor: self.name.to_string(), after: timeout }),
            Ok(CallResult::SenderError) => Err(SendError::Failed { actor: self.name.to_string() }),
            Err(_) => Err(SendError::NotRunning { actor: self.name.to_string() }),
        }
    }

    /// Like [`Addr::ask`], but keeps trying (every `RETRY_EVERY`) while the actor is not
    /// running, fails or does not answer, up to `budget` in all: for messages that must
    /// not be lost while their receiver restarts, and whose handler is idempotent. The
    /// message is rebuilt for each try.
    pub async fn ask_until<T: Send + 'static>(
        &self,
        budget: Duration,
        make: impl Fn(RpcReplyPort<T>) -> A::Msg,
    ) -> Result<T, SendError> {
        const RETRY_EVERY: Duration = Duration::from_millis(20);
        let start = tokio::time::Instant::now();
        loop {
            let left = budget.saturating_sub(start.elapsed());
            match self.ask(left.max(Duration::from_millis(1)), &make).await {
                Err(_) if start.elapsed() + RETRY_EVERY < budget => tokio::time::sleep(RETRY_EVERY).await,
                other => return other,
            }
        }
    }
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
