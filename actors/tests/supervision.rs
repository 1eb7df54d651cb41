//! Supervision trees built with `warden_actors::tree` behave like Erlang/OTP supervisors:
//! one_for_one, one_for_all and rest_for_one restart what they promise and nothing else,
//! and a supervisor past its restart intensity fails upward (meltdown escalation).
//!
//! Actor names live in ractor's global registry and tests in this binary run in parallel,
//! so every test uses its own name prefix.

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort};
use ractor_supervisor::{ChildSpec, Supervisor, SupervisorArguments, SupervisorMsg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use warden_actors::tree;
use warden_core::config::{Strategy, TreeSpec};

/// Generous bound for anything the supervisors do: test machines are noisy.
const WAIT: Duration = Duration::from_secs(5);
/// How long we watch for restarts that must *not* happen.
const SETTLE: Duration = Duration::from_millis(300);

type Starts = Arc<Mutex<HashMap<String, u32>>>;

/// A child that counts its starts and fails or stops on request.
struct Crashable {
    starts: Starts,
    name: String,
}

enum CrashMsg {
    /// The handler panics: ractor catches it and reports `ActorFailed` to the supervisor.
    Panic,
    /// Clean stop: the supervisor sees `ActorTerminated`.
    Stop,
    /// Answers when the actor is up and handling messages.
    Ping(RpcReplyPort<()>),
}

#[ractor::async_trait]
impl Actor for Crashable {
    type Msg = CrashMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<CrashMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        *self.starts.lock().expect("start counter lock").entry(self.name.clone()).or_default() += 1;
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<CrashMsg>, msg: CrashMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        match msg {
            CrashMsg::Panic => panic!("{}: deliberate panic for the supervision test", self.name),
            CrashMsg::Stop => myself.stop(None),
            CrashMsg::Ping(reply) => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

fn new_starts() -> Starts {
    Arc::new(Mutex::new(HashMap::new()))
}

fn starts(s: &Starts, name: &str) -> u32 {
    s.lock().expect("start counter lock").get(name).copied().unwrap_or(0)
}

/// A permanent `Crashable` child built with the project's own `tree::worker`.
fn crashable(s: &Starts, name: &str) -> ChildSpec {
    let (s, n) = (s.clone(), name.to_string());
    tree::worker(name.to_string(), move || Crashable { starts: s.clone(), name: n.clone() })
}

fn spec(strategy: Strategy, max_restarts: usize) -> TreeSpec {
    TreeSpec { strategy, max_restarts, period: Duration::from_secs(10) }
}

/// Polls `pred` every 10 ms; panics with `what` if it does not hold within `timeout`.
async fn wait_until(what: &str, timeout: Duration, pred: impl Fn() -> bool) {
    let start = Instant::now();
    while !pred() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn actor(name: &str) -> ActorRef<CrashMsg> {
    let cell = ractor::registry::where_is(name).unwrap_or_else(|| panic!("actor {name} is not registered"));
    ActorRef::<CrashMsg>::from(cell)
}

fn actor_id(name: &str) -> ActorId {
    ractor::registry::where_is(name).unwrap_or_else(|| panic!("actor {name} is not registered")).get_id()
}

fn send(name: &str, msg: CrashMsg) {
    actor(name).cast(msg).unwrap_or_else(|e| panic!("send to {name}: {e}"));
}

/// Waits for `name` to reach `n` starts, then checks the instance answers a ping.
async fn wait_started(s: &Starts, name: &str, n: u32) {
    wait_until(&format!("{name} started {n} time(s)"), WAIT, || starts(s, name) >= n).await;
    assert_eq!(starts(s, name), n, "{name} must be started exactly {n} time(s)");
    // The new instance can still be in `pre_start`: messages queue until it runs.
    ractor::call_t!(actor(name), CrashMsg::Ping, 5_000)
        .unwrap_or_else(|e| panic!("{name} does not answer a ping after start #{n}: {e}"));
}

async fn spawn_root(name: &str, spec: TreeSpec, children: Vec<ChildSpec>) -> (ActorRef<SupervisorMsg>, JoinHandle<()>) {
    Supervisor::spawn(name.to_string(), SupervisorArguments { child_specs: children, options: tree::options(&spec) })
        .await
        .unwrap_or_else(|e| panic!("spawn root supervisor {name}: {e}"))
}

async fn stop_root(sup: ActorRef<SupervisorMsg>, handle: JoinHandle<()>) {
    sup.stop(None);
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("root supervisor stops within the timeout")
        .expect("root supervisor task does not panic");
}

/// Root supervisor over children `{prefix}.a`, `{prefix}.b`, `{prefix}.c` (in that order).
async fn abc(prefix: &str, strategy: Strategy) -> (Starts, [String; 3], ActorRef<SupervisorMsg>, JoinHandle<()>) {
    let s = new_starts();
    let names = [format!("{prefix}.a"), format!("{prefix}.b"), format!("{prefix}.c")];
    let children = names.iter().map(|n| crashable(&s, n)).collect();
    let (sup, handle) = spawn_root(&format!("{prefix}.root"), spec(strategy, 5), children).await;
    for n in &names {
        wait_started(&s, n, 1).await;
    }
    (s, names, sup, handle)
}

// one_for_one: a failing child is restarted alone; its siblings keep running untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_one_for_one_restarts_only_the_failed_child() {
    let (s, [a, b, c], sup, handle) = abc("sv-o4o", Strategy::OneForOne).await;
    let (a_id, c_id) = (actor_id(&a), actor_id(&c));

    send(&b, CrashMsg::Panic);
    wait_started(&s, &b, 2).await;
    tokio::time::sleep(SETTLE).await;

    assert_eq!(starts(&s, &b), 2, "b restarted exactly once");
    assert_eq!(starts(&s, &a), 1, "a (before b) must not be restarted under one_for_one");
    assert_eq!(starts(&s, &c), 1, "c (after b) must not be restarted under one_for_one");
    assert_eq!(actor_id(&a), a_id, "a is still the same actor instance");
    assert_eq!(actor_id(&c), c_id, "c is still the same actor instance");
    stop_root(sup, handle).await;
}

// one_for_all: one failing child restarts every child of the supervisor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_one_for_all_restarts_every_child() {
    let (s, [a, b, c], sup, handle) = abc("sv-o4a", Strategy::OneForAll).await;
    let (a_id, c_id) = (actor_id(&a), actor_id(&c));

    send(&b, CrashMsg::Panic);
    for n in [&a, &b, &c] {
        wait_started(&s, n, 2).await;
    }
    tokio::time::sleep(SETTLE).await;

    for n in [&a, &b, &c] {
        assert_eq!(starts(&s, n), 2, "{n} restarted exactly once under one_for_all");
    }
    assert_ne!(actor_id(&a), a_id, "a is a new actor instance");
    assert_ne!(actor_id(&c), c_id, "c is a new actor instance");
    stop_root(sup, handle).await;
}

// rest_for_one: the failing child and the children started after it restart; earlier ones do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rest_for_one_restarts_the_failed_child_and_later_ones() {
    let (s, [a, b, c], sup, handle) = abc("sv-r4o", Strategy::RestForOne).await;
    let (a_id, c_id) = (actor_id(&a), actor_id(&c));

    send(&b, CrashMsg::Panic);
    wait_started(&s, &b, 2).await;
    wait_started(&s, &c, 2).await;
    tokio::time::sleep(SETTLE).await;

    assert_eq!(starts(&s, &b), 2, "b restarted exactly once");
    assert_eq!(starts(&s, &c), 2, "c (started after b) restarted exactly once under rest_for_one");
    assert_eq!(starts(&s, &a), 1, "a (started before b) must not be restarted under rest_for_one");
    assert_eq!(actor_id(&a), a_id, "a is still the same actor instance");
    assert_ne!(actor_id(&c), c_id, "c is a new actor instance");
    stop_root(sup, handle).await;
}

// meltdown: a subtree past its restart intensity fails upward and its parent restarts the whole subtree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_meltdown_escalates_to_the_parent_which_restarts_the_subtree() {
    let s = new_starts();
    let (sub, x, y) = ("sv-melt.sub".to_string(), "sv-melt.x".to_string(), "sv-melt.y".to_string());
    let (cs, cx, cy) = (s.clone(), x.clone(), y.clone());
    let subtree = tree::subtree(sub.clone(), spec(Strategy::OneForOne, 2), move || {
        vec![crashable(&cs, &cx), crashable(&cs, &cy)]
    });
    let (sup, handle) = spawn_root("sv-melt.root", spec(Strategy::OneForOne, 5), vec![subtree]).await;
    wait_started(&s, &x, 1).await;
    wait_started(&s, &y, 1).await;
    let sub_id = actor_id(&sub);

    // Two failures are within the subtree's intensity (max_restarts 2): it restarts x itself.
    for n in [2, 3] {
        send(&x, CrashMsg::Panic);
        wait_started(&s, &x, n).await;
    }
    assert_eq!(actor_id(&sub), sub_id, "the subtree absorbed two failures without being replaced");
    assert_eq!(starts(&s, &y), 1, "y untouched while the subtree absorbs x's failures (one_for_one)");

    // The third failure exceeds it: the subtree melts down and the root restarts it.
    send(&x, CrashMsg::Panic);
    wait_until("the root replaces the melted-down subtree", WAIT, || {
        ractor::registry::where_is(&sub).is_some_and(|c| c.get_id() != sub_id)
    })
    .await;
    wait_until("x started again by the new subtree", WAIT, || starts(&s, &x) >= 4).await;
    wait_until("y, which never failed, restarted with its new supervisor", WAIT, || starts(&s, &y) >= 2).await;
    ractor::call_t!(actor(&x), CrashMsg::Ping, 5_000).expect("x answers under the new subtree");
    ractor::call_t!(actor(&y), CrashMsg::Ping, 5_000).expect("y answers under the new subtree");
    // Exactly one replacement: a respawn waits for the old holder of a name to unregister
    // (tree::name_released), so the new subtree does not melt down on name collisions.
    tokio::time::sleep(SETTLE).await;
    assert_eq!(starts(&s, &x), 4, "x: initial start, two restarts by the subtree, one by the new subtree");
    assert_eq!(starts(&s, &y), 2, "y: initial start, one by the new subtree");
    assert_eq!(sup.get_status(), ActorStatus::Running, "the root absorbed the meltdown and keeps running");
    stop_root(sup, handle).await;
}

// meltdown at the top: a root supervisor past its restart intensity terminates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_meltdown_at_the_root_terminates_the_root_supervisor() {
    let s = new_starts();
    let x = "sv-top.x".to_string();
    let (sup, handle) = Supervisor::spawn(
        "sv-top.root".to_string(),
        SupervisorArguments {
            child_specs: vec![crashable(&s, &x)],
            options: tree::options(&spec(Strategy::OneForOne, 1)),
        },
    )
    .await
    .expect("spawn root supervisor");
    wait_started(&s, &x, 1).await;

    send(&x, CrashMsg::Panic);
    wait_started(&s, &x, 2).await;
    assert_eq!(sup.get_status(), ActorStatus::Running, "one failure is within max_restarts 1");

    send(&x, CrashMsg::Panic);
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("the root supervisor terminates after its second child failure (meltdown)")
        .expect("root supervisor task does not panic");
    assert_eq!(sup.get_status(), ActorStatus::Stopped, "the root supervisor is stopped");
    assert_eq!(starts(&s, &x), 2, "no restart after the meltdown");
    wait_until("the child is gone with its supervisor", WAIT, || ractor::registry::where_is(&x).is_none()).await;
}

// permanent children (tree::worker) are restarted even when they stop cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_permanent_child_restarted_after_clean_stop() {
    let s = new_starts();
    let x = "sv-perm.x".to_string();
    let (sup, handle) = spawn_root("sv-perm.root", spec(Strategy::OneForOne, 5), vec![crashable(&s, &x)]).await;
    wait_started(&s, &x, 1).await;

    send(&x, CrashMsg::Stop);
    wait_started(&s, &x, 2).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(starts(&s, &x), 2, "a clean stop restarts a permanent child exactly once");
    stop_root(sup, handle).await;
}
