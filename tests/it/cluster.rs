//! Several runtimes ("nodes") on one PostgreSQL database (`EZW_TEST_POSTGRES_URL`), in process:
//! cross-node wake-ups, cross-node live hints with resumable ids, and session leases moving
//! between nodes. Each test uses a schema of its own, dropped at the end. (The process-level
//! test with two `ezw-server`s and `kill -9` is `crates/ezw-http/tests/processes/multinode.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ezw::core::ids::{LineId, MessageId, OrganizationId, UserId};
use ezw::model::{
    BillingState, LifecycleState, Line, MessageContent, MessageKind, MessageStatus, Organization, ProviderKind, User,
};
use ezw::ports::{
    Capabilities, ClusterStore, LineProvider, LiveHint, LiveHub, NewOutbound, OutboundMessage, ProviderError,
    ProviderHealth, Replay, SendReceipt, SendTarget, Store,
};
use ezw::storage::postgres::{PgOptions, PgStore};
use ezw::{Clock, Ezw, EzwConfig, ManualClock, PhoneNumber, Timestamp};

/// A schema of the test database, dropped when the test ends.
struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    fn new(tag: &str) -> Self {
        let url = std::env::var("EZW_TEST_POSTGRES_URL")
            .expect("EZW_TEST_POSTGRES_URL must point at a PostgreSQL database (see the README's test command)");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        Self { url, name: format!("ezw_it_{tag}_{}_{nanos}", std::process::id()) }
    }

    /// A node's store on the schema.
    async fn store(&self) -> PgStore {
        PgStore::connect(PgOptions::new(self.url.clone()).schema(self.name.clone()).pool_size(4))
            .await
            .expect("connecting to PostgreSQL at EZW_TEST_POSTGRES_URL")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

fn at0() -> Timestamp {
    Timestamp::from_unix_ms(1_760_000_000_000)
}

/// An organization with one line of `kind`, written straight to the store.
async fn org_and_line(store: &dyn Store, kind: ProviderKind, state: LifecycleState) -> Line {
    let at = at0();
    let org = Organization {
        id: OrganizationId::generate(at.unix_ms()),
        name: "Cluster".into(),
        slug: format!("cluster-{}", rand::random::<u32>()),
        billing_state: BillingState::Active,
        line_slots: 5,
        plan: ezw::model::DEFAULT_PLAN.into(),
        created_at: at,
    };
    let owner = User {
        id: UserId::generate(at.unix_ms()),
        email: format!("owner-{}@cluster.example", rand::random::<u32>()),
        display_name: "Owner".into(),
        password_hash: None,
        created_at: at,
    };
    store.create_organization(&org, &owner, true).await.expect("organization");
    let line = Line {
        id: LineId::generate(at.unix_ms()),
        organization_id: org.id.clone(),
        display_name: "Cluster line".into(),
        phone_number: PhoneNumber::parse("+15550170000").expect("phone"),
        provider_kind: kind,
        provider_config: serde_json::json!({}),
        lifecycle_state: state,
        state_reason: None,
        default_assignee_id: None,
        pacing: None,
        created_at: at,
        updated_at: at,
    };
    store.insert_line(&line).await.expect("line");
    line
}

fn key() -> [u8; 32] {
    [7u8; 32]
}

/// An enqueue through node A's store wakes node B's delivery worker at once: B polls only
/// once an hour, so only the `NOTIFY` can explain a prompt delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_on_one_node_wakes_the_worker_of_another() {
    let schema = TestSchema::new("wake");
    let node_a = Arc::new(schema.store().await);
    let node_b = Arc::new(schema.store().await);
    let line = org_and_line(node_a.as_ref(), ProviderKind::Simulator, LifecycleState::Connected).await;

    let clock: Arc<dyn Clock> = Arc::new(ezw::SystemClock);
    let mut config = EzwConfig::default();
    config.poll_interval = Duration::from_secs(3600);
    let builder =
        Ezw::builder(node_b.clone()).clock(clock.clone()).config(config).wake_source(Arc::new(node_b.wake_source()));
    let sim = ezw::providers::sim::SimProvider::new(clock.clone(), builder.event_sink());
    let b = builder.provider(Arc::new(sim.clone())).signing_key(&key()).build().expect("runtime B");
    let workers = b.start().expect("workers");
    // Let B's first claim (empty) pass, so it waits for a wake-up or the hour.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let id = MessageId::generate(clock.now().unix_ms());
    node_a
        .enqueue_outbound(NewOutbound {
            organization_id: line.organization_id.clone(),
            line_id: line.id.clone(),
            target: SendTarget::Phone(PhoneNumber::parse("+15550170001").expect("phone")),
            message_id: id.clone(),
            kind: MessageKind::Text,
            content: MessageContent { body: Some("wake up".into()), ..MessageContent::default() },
            sent_by_user_id: None,
            idempotency: None,
            created_at: clock.now(),
        })
        .await
        .expect("enqueue on node A");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = node_a.get_message(&line.organization_id, &id).await.expect("read").expect("message");
        if message.status != MessageStatus::Queued {
            assert_eq!(sim.calls(), 1, "node B's simulator took the send");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node B's worker was not woken by node A's enqueue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(workers.shutdown(Duration::from_secs(5)).await);
}

/// A hint published on node A reaches node B's subscribers, with an id node B can resume from;
/// ids from before a hub existed, or from another deployment, are gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_hints_cross_nodes_and_resume_on_either() {
    let schema = TestSchema::new("live");
    let (store_a, store_b) = (schema.store().await, schema.store().await);
    let clock: Arc<dyn Clock> = Arc::new(ezw::SystemClock);
    let hub_a = store_a.live_hub(100, Duration::from_secs(300), clock.clone()).await.expect("hub A");
    let hub_b = store_b.live_hub(100, Duration::from_secs(300), clock.clone()).await.expect("hub B");
    let start = hub_b.last_event_id();
    let mut rx_b = hub_b.subscribe();
    let org = OrganizationId::from_raw("org_cluster_live");
    for n in 1..=3 {
        hub_a.publish(LiveHint { version: Some(n), ..LiveHint::new("conversation.updated", org.clone()) });
    }
    let mut ids = Vec::new();
    for n in 1..=3 {
        let event = tokio::time::timeout(Duration::from_secs(5), rx_b.recv())
            .await
            .expect("node B receives node A's hint")
            .expect("open");
        assert_eq!(event.hint.version, Some(n), "in publication order");
        assert_eq!(event.hint.organization_id, org);
        ids.push(event.id);
    }
    assert!(ids.windows(2).all(|w| w[0].seq < w[1].seq), "ids grow: {ids:?}");
    // Both hubs number hints alike: a client may resume on either node.
    let wait_a = tokio::time::Instant::now() + Duration::from_secs(5);
    while hub_a.last_event_id() != ids[2] {
        assert!(tokio::time::Instant::now() < wait_a, "node A's hub sees its own hints come back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for hub in [&hub_a, &hub_b] {
        match hub.replay_since(ids[0]) {
            Replay::Events(events) => {
                assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), ids[1..], "replay after the first")
            }
            Replay::Gap => panic!("a recent id must replay"),
        }
    }
    assert!(matches!(hub_b.replay_since(start), Replay::Events(ref e) if e.len() == 3), "from B's start");
    let mut foreign = ids[0];
    foreign.epoch ^= 1;
    assert!(matches!(hub_b.replay_since(foreign), Replay::Gap), "another deployment's id");
    if start.seq > 0 {
        let mut before = start;
        before.seq -= 1;
        assert!(matches!(hub_b.replay_since(before), Replay::Gap), "before the hub started");
    }
}

/// What the session providers did: (`open` or `close`, node, line).
type SessionLog = Arc<Mutex<Vec<(String, &'static str, LineId)>>>;

/// A provider with QR-style sessions that records which node opened and closed which line.
struct SessionProvider {
    node: &'static str,
    log: SessionLog,
}

#[async_trait]
impl LineProvider for SessionProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::WebSession
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { qr_pairing: true, text: true, ..Capabilities::default() }
    }

    fn validate_config(&self, config: &serde_json::Value) -> ezw::Result<serde_json::Value> {
        Ok(config.clone())
    }

    async fn send(&self, _: &Line, _: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        Err(ProviderError::unsupported("send"))
    }

    async fn health(&self, _: &Line, _: bool) -> Result<ProviderHealth, ProviderError> {
        Err(ProviderError::unsupported("health"))
    }

    async fn open_session(&self, line: &Line) -> Result<(), ProviderError> {
        self.log.lock().expect("log").push(("open".into(), self.node, line.id.clone()));
        Ok(())
    }

    async fn close_session(&self, line: &Line) {
        self.log.lock().expect("log").push(("close".into(), self.node, line.id.clone()));
    }
}

fn node(store: Arc<PgStore>, clock: &ManualClock, name: &'static str, log: &SessionLog) -> Ezw {
    let mut config = EzwConfig::default();
    config.node_id = name.into();
    config.session_lease = Duration::from_secs(30);
    config.poll_interval = Duration::from_secs(3600);
    Ezw::builder(store)
        .clock(Arc::new(clock.clone()))
        .config(config)
        .provider(Arc::new(SessionProvider { node: name, log: log.clone() }))
        .signing_key(&key())
        .build()
        .expect("runtime")
}

async fn wait_for(log: &SessionLog, what: (&str, &str), line: &LineId) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log.lock().expect("log").iter().any(|(op, node, l)| (op.as_str(), *node) == what && l == line) {
        assert!(std::time::Instant::now() < deadline, "no {what:?} for {line}: {:?}", log.lock().expect("log"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node at a time runs a QR line's session. A node that stops hands it over at the other
/// node's next round; a node that dies holding it loses it once the lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qr_line_session_runs_on_one_node_and_moves_when_its_node_goes() {
    let schema = TestSchema::new("lease");
    let (store_a, store_b) = (Arc::new(schema.store().await), Arc::new(schema.store().await));
    let line = org_and_line(store_a.as_ref(), ProviderKind::WebSession, LifecycleState::Connected).await;
    let clock = ManualClock::new(at0());
    let log: SessionLog = Arc::default();
    let a = node(store_a.clone(), &clock, "node-a", &log);
    let b = node(store_b.clone(), &clock, "node-b", &log);

    let workers_a = a.start().expect("node A");
    wait_for(&log, ("open", "node-a"), &line.id).await;
    let workers_b = b.start().expect("node B");
    // Rounds pass (every 10 s of clock); B never opens while A renews.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        clock.advance(Duration::from_secs(10));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        log.lock().expect("log").iter().all(|(_, node, _)| *node == "node-a"),
        "only node A ran the session: {:?}",
        log.lock().expect("log")
    );
    let lease = store_b.get_session_lease(&line.id).await.expect("lease").expect("held");
    assert_eq!(lease.holder, "node-a");

    // A stops: it closes the session and releases the lease; B opens at its next round.
    assert!(workers_a.shutdown(Duration::from_secs(5)).await);
    wait_for(&log, ("close", "node-a"), &line.id).await;
    clock.advance(Duration::from_secs(10));
    wait_for(&log, ("open", "node-b"), &line.id).await;
    assert!(workers_b.shutdown(Duration::from_secs(5)).await);

    // A node that died holding the lease (it never renews or releases): nobody opens the
    // session until the lease has run out; then node A takes over.
    let now = clock.now();
    let dead = store_a
        .acquire_session_lease(&line.id, "node-dead", now, now.plus(Duration::from_secs(30)))
        .await
        .expect("the dead node's lease");
    assert_eq!(dead.holder, "node-dead");
    log.lock().expect("log").clear();
    let a2 = node(store_a.clone(), &clock, "node-a", &log);
    let workers_a2 = a2.start().expect("node A again");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        clock.advance(Duration::from_secs(10));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(log.lock().expect("log").is_empty(), "nobody opens before the lease runs out");
    clock.advance(Duration::from_secs(15));
    wait_for(&log, ("open", "node-a"), &line.id).await;
    assert_eq!(store_b.get_session_lease(&line.id).await.expect("lease").expect("held").holder, "node-a");
    assert!(workers_a2.shutdown(Duration::from_secs(5)).await);
}

/// A runtime on `store` with a QR-capable simulator, woken by the other nodes through the store.
fn qr_node(store: Arc<PgStore>, name: &str) -> (Ezw, ezw::providers::sim::SimProvider) {
    let clock: Arc<dyn Clock> = Arc::new(ezw::SystemClock);
    let mut config = EzwConfig::default();
    config.node_id = name.into();
    config.session_lease = Duration::from_secs(30);
    let builder =
        Ezw::builder(store.clone()).clock(clock.clone()).config(config).wake_source(Arc::new(store.wake_source()));
    let sim = ezw::providers::sim::SimProvider::new(clock, builder.event_sink());
    let ezw = builder.provider(Arc::new(sim.clone())).signing_key(&key()).build().expect("runtime");
    (ezw, sim)
}

/// A pairing requested through node B is started by node A, which holds the line's session: B's
/// request wakes A through the database (A's next round is 10 s away, so only the wake-up explains
/// a code within seconds), the code A's simulator shows is what B serves, and scanning it on A
/// connects the line for both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_requested_on_one_node_is_shown_by_the_node_holding_the_session() {
    use ezw::model::{PairingMethod, PairingStatus};
    let schema = TestSchema::new("pairing");
    let (store_a, store_b) = (Arc::new(schema.store().await), Arc::new(schema.store().await));
    let (a, sim_a) = qr_node(store_a.clone(), "node-a");
    let (b, sim_b) = qr_node(store_b.clone(), "node-b");
    let (org, owner) = a
        .orgs()
        .create_organization(ezw::service::NewOrganization {
            name: "Cluster QR".into(),
            slug: Some(format!("cluster-qr-{}", rand::random::<u32>())),
            owner_email: format!("owner-{}@cluster.example", rand::random::<u32>()),
            owner_name: "Owner".into(),
            owner_password: ezw::Secret::new("correct horse battery staple".to_owned()),
            billing_state: BillingState::Active,
            line_slots: 5,
        })
        .await
        .expect("organization");
    let on_a = a.auth().member_principal(&org.id, &owner.id).await.expect("principal on A");
    let on_b = b.auth().member_principal(&org.id, &owner.id).await.expect("principal on B");

    let workers_a = a.start().expect("node A");
    let line = a
        .lines()
        .create_line(
            &on_a,
            ezw::service::NewLine {
                display_name: "QR".into(),
                phone_number: "+15550170100".into(),
                provider_kind: ProviderKind::Simulator,
                provider_config: serde_json::json!({ "pairing": "qr" }),
                pacing: None,
            },
        )
        .await
        .expect("QR line");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(code) = sim_a.current_code(&line.id) {
            break code;
        }
        assert!(std::time::Instant::now() < deadline, "node A did not start the new line's first pairing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(store_b.get_session_lease(&line.id).await.expect("lease").expect("held").holder, "node-a");
    let workers_b = b.start().expect("node B");

    // Node B asks for a new pairing; node A shows its code, and B serves that code.
    let requested =
        b.lines().request_pairing(&on_b, &line.id, PairingMethod::Qr, Some("re-pair-1")).await.expect("request on B");
    assert_eq!(requested.pairing.status, PairingStatus::Requested);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let served = loop {
        match b.lines().current_code(&on_b, &line.id).await {
            Ok(p) if p.id == requested.pairing.id => break p,
            Ok(_) => {}
            Err(e) => assert!(matches!(e.code(), "qr_pending"), "{e}"),
        }
        assert!(std::time::Instant::now() < deadline, "node A did not pick up node B's pairing request in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let code = served.qr_code.clone().expect("a QR code");
    assert_ne!(code, first, "a new pairing shows a new code");
    assert_eq!(sim_a.current_code(&line.id).as_deref(), Some(code.as_str()), "node A's session shows it");
    assert_eq!(sim_b.current_code(&line.id), None, "node B runs no session of the line");

    sim_a.scan(&line.id, &code).expect("scan on the node holding the session");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.lines().get(&on_b, &line.id).await.expect("line").lifecycle_state != LifecycleState::Connected {
        assert!(std::time::Instant::now() < deadline, "the line did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let history = b.lines().transitions(&on_b, &line.id, None, 10).await.expect("history");
    let triggers: Vec<&str> = history.iter().rev().map(|t| t.transition.trigger.as_str()).collect();
    assert_eq!(triggers, ["pairing_requested", "paired"], "recorded once, by the holder");
    assert!(workers_b.shutdown(Duration::from_secs(5)).await);
    assert!(workers_a.shutdown(Duration::from_secs(5)).await);
}
