//! HttpServer: the actor under the http subtree that serves the API.
//!
//! The listening socket is bound once when the node starts (so a busy port fails the
//! start with a clear error instead of a restart loop); each start of this actor serves a
//! clone of it, and the serving task dies with the actor's state. The limits that keep
//! clients from starving supervision are in [`super::serve`].

use super::{AppState, routes, serve};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use warden_actors::addr::AbortOnDrop;
use warden_actors::registry::Registration;

pub const PATH: &str = "http/server";

pub struct HttpServer {
    pub app: AppState,
}

pub struct State {
    _serve: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for HttpServer {
    type Msg = ();
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<State, ActorProcessingErr> {
        let std_listener = self.app.listener.try_clone()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let router = routes::router(self.app.clone());
        let task = tokio::spawn(serve::serve(listener, router, self.app.limits));
        Ok(State { _serve: AbortOnDrop(task), _reg: self.app.views.registry.started(PATH) })
    }
}
