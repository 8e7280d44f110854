//! The Connect client against the simulated Connect over HTTP: every endpoint parses, and
//! errors come back typed.

mod common;

use std::time::Duration;

use common::gateway::{Sim, TOKEN};
use prusa_connect_mqtt::connect::client::{RejectedPrinter, Snapshot};
use prusa_connect_mqtt::connect::model::{JobState, Printer, PrinterState};
use prusa_connect_mqtt::connect::{ConnectClient, ConnectError, TokenSource};
use prusa_connect_sim::{Fault, PrinterSpec};
use serde_json::json;

fn client(sim: &Sim, token: &str) -> ConnectClient {
    ConnectClient::new(
        &sim.url(),
        TokenSource::Static(token.to_string().into()),
        Duration::from_secs(2),
    )
    .unwrap()
}

#[tokio::test]
async fn every_endpoint_parses() {
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    for i in 0..120 {
        // More than one page of printers.
        sim.sim
            .add_printer(PrinterSpec::named(&format!("Farm {i}")));
    }
    sim.sim.queue_job(&uuid, "/usb/next.bgcode");
    sim.sim.set_unseen(3);
    let job_id = sim.sim.start_job(&uuid, "cube.bgcode", 600, &["A", "B"]);
    let c = client(&sim, TOKEN);

    let (printers, rejected) = c.printers().await.unwrap();
    assert_eq!(printers.len(), 121);
    assert!(rejected.is_empty());
    let p = c.printer(&uuid).await.unwrap();
    assert_eq!(p.effective_state(), PrinterState::Printing);
    assert_eq!(p.job_info.unwrap().id, Some(job_id));
    let job = c.job(&uuid, job_id).await.unwrap();
    assert_eq!(job.cancelable.unwrap().objects.len(), 2);
    assert_eq!(c.jobs(&uuid, 10).await.unwrap().jobs[0].id, job_id);
    let events = c.events_since(&uuid, Some(0.0)).await.unwrap();
    assert!(
        events.windows(2).all(|w| w[0].created <= w[1].created),
        "oldest first"
    );
    assert!(
        events
            .iter()
            .any(|e| e.raw.get("state") == Some(&json!("PRINTING")))
    );
    assert_eq!(c.queue(&uuid).await.unwrap().planned_jobs.len(), 1);
    assert!(
        c.download_queue(&uuid)
            .await
            .unwrap()
            .planned_jobs
            .is_empty()
    );
    assert!(c.files(&uuid).await.unwrap().contains_key("files"));
    assert!(c.storages(&uuid).await.unwrap().contains_key("storages"));
    let cameras = c.cameras(&uuid).await.unwrap();
    // The simulator gives the first printer a camera.
    let camera = cameras.cameras[0].id_string();
    let Snapshot::Image { bytes, etag, .. } = c.snapshot(&camera, &uuid, None, None).await.unwrap()
    else {
        panic!("expected an image")
    };
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "a JPEG");
    assert!(matches!(
        c.snapshot(&camera, &uuid, etag.as_deref(), None)
            .await
            .unwrap(),
        Snapshot::NotModified
    ));
    let supported = c.supported_commands(&uuid).await.unwrap();
    assert!(
        supported
            .commands
            .iter()
            .any(|s| s.command == "MOVE" && !s.args.is_empty())
    );
    assert!(!c.printer_types().await.unwrap().printer_types.is_empty());
    assert_eq!(c.unseen_notifications().await.unwrap().unseen, 3);
    assert!(c.version().await.unwrap().version.is_some());
    let done = c
        .execute(&uuid, "STOP_PRINT", &serde_json::Map::new())
        .await
        .unwrap();
    assert!(done.command.id > 0);
    assert_eq!(
        c.job(&uuid, job_id).await.unwrap().state,
        Some(JobState::FinStopped)
    );
    c.set_job_reason(&uuid, job_id, &json!({"tag": ["OTHER"]}))
        .await
        .unwrap();
}

#[tokio::test]
async fn errors_are_typed() {
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    assert!(matches!(
        client(&sim, "wrong").printers().await,
        Err(ConnectError::Unauthorized { .. })
    ));
    let c = client(&sim, TOKEN);
    match c
        .execute(&uuid, "PAUSE_PRINT", &serde_json::Map::new())
        .await
    {
        Err(ConnectError::Api {
            status: 409,
            message,
            ..
        }) => assert!(message.contains("IDLE"), "{message}"),
        other => panic!("expected a 409, got {other:?}"),
    }
    sim.sim
        .set_fault(Some(Fault::TooManyRequests { retry_after_s: 7 }));
    let e = c.printers().await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)), "{e}");
    // The client keeps that pause: the list is refused at once, without a request.
    sim.sim.set_fault(None);
    let sent = sim.sim.requests().len();
    let e = c.printers().await.unwrap_err();
    assert!(
        matches!(e, ConnectError::Api { status: 429, .. }) && e.retry_after().is_some(),
        "{e}"
    );
    assert_eq!(sim.sim.requests().len(), sent, "not sent during the pause");
    // A new client knows nothing of it.
    let c = client(&sim, TOKEN);
    for fault in [Fault::MalformedJson, Fault::TruncatedJson] {
        sim.sim.set_fault(Some(fault));
        assert!(matches!(
            c.printers().await,
            Err(ConnectError::Decode { .. })
        ));
    }
    sim.sim
        .set_fault(Some(Fault::Delay(Duration::from_secs(5))));
    assert!(
        matches!(c.printers().await, Err(ConnectError::Transport(_))),
        "a timeout"
    );
    sim.sim.set_fault(None);
    sim.sim.override_field(&uuid, "speed", json!("fast"));
    let (printers, rejected) = c.printers().await.unwrap();
    assert!(printers.is_empty());
    assert_eq!(rejected[0].uuid.as_deref(), Some(uuid.as_str()));
}

/// `connect.token_file` is read off the runtime's threads: a file that takes its time (here a
/// FIFO that a task of the same runtime writes) holds up nothing else.
#[test]
fn a_token_file_that_blocks_does_not_block_the_runtime() {
    let printers = common::blocking::on_one_thread("a request reading the token file", || async {
        let sim = Sim::start().await;
        sim.sim.add_printer(PrinterSpec::named("MK4"));
        let dir = tempfile::tempdir().unwrap();
        let fifo = common::blocking::make_fifo(&dir.path().join("token"));
        let writer = common::blocking::write_fifo_when_read(&fifo, format!("{TOKEN}\n"));
        let c = ConnectClient::new(&sim.url(), TokenSource::File(fifo), Duration::from_secs(5))
            .unwrap();
        let listed = c.printers().await;
        writer.await.unwrap();
        listed
    });
    let (printers, _) = printers.expect("the token from the file works");
    assert_eq!(printers.len(), 1);
}

/// A server that accepts connections, reads nothing and never answers; counts connections.
async fn silent_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            open.push(socket);
        }
    });
    (url, accepted)
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Far below the request timeout: the request was abandoned, it did not time out.
const GIVE_UP_WITHIN: Duration = Duration::from_secs(5);

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Cancels `client`'s abort handle (as a stopping gateway does) and requires `call` to give
/// up at once, as abandoned.
async fn abort_and_expect_abandoned<T: std::fmt::Debug>(
    client: &ConnectClient,
    what: &str,
    call: tokio::task::JoinHandle<Result<T, ConnectError>>,
) {
    client.abort_handle().cancel();
    let result = tokio::time::timeout(GIVE_UP_WITHIN, call)
        .await
        .unwrap_or_else(|_| panic!("{what} still waits {GIVE_UP_WITHIN:?} after the abort"))
        .unwrap();
    match result {
        Err(ConnectError::Transport(detail)) if detail.contains("stopping") => {}
        other => panic!("{what}: expected the request abandoned, got {other:?}"),
    }
}

#[tokio::test]
async fn abort_abandons_a_version_request_connect_does_not_answer() {
    let (url, accepted) = silent_server().await;
    let c = ConnectClient::new(&url, TokenSource::Static(TOKEN.into()), REQUEST_TIMEOUT).unwrap();
    let call = tokio::spawn({
        let c = c.clone();
        async move { c.version().await }
    });
    wait_until("the version request reached the server", || {
        accepted.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    abort_and_expect_abandoned(&c, "version()", call).await;
}

/// A client renewing `refresh` with the simulator's account server, and its list request,
/// once the renewal has reached the account server.
async fn list_while_renewing(
    sim: &Sim,
    dir: &std::path::Path,
    refresh: &str,
) -> (
    ConnectClient,
    tokio::task::JoinHandle<Result<(Vec<Printer>, Vec<RejectedPrinter>), ConnectError>>,
) {
    let refresher = prusa_connect_mqtt::auth::Refresher::new(
        &sim.url(),
        dir,
        Some(&refresh.to_string().into()),
        None,
        REQUEST_TIMEOUT,
    )
    .unwrap();
    let c = ConnectClient::new(
        &sim.url(),
        TokenSource::Refresh(std::sync::Arc::new(refresher)),
        REQUEST_TIMEOUT,
    )
    .unwrap();
    let call = tokio::spawn({
        let c = c.clone();
        async move { c.printers().await }
    });
    wait_until("the token renewal reached the account server", || {
        sim.sim.requests().iter().any(|r| r.path == "/o/token/")
    })
    .await;
    (c, call)
}

#[tokio::test]
async fn abort_abandons_a_request_waiting_for_a_hanging_token_renewal() {
    let sim = Sim::start().await;
    sim.sim.add_user("maker@example.com", "pw", None);
    sim.sim.set_token_endpoint_delay(Duration::from_secs(60));
    let refresh = sim.sim.issue_refresh_token("maker@example.com");
    let dir = tempfile::tempdir().unwrap();
    let (c, call) = list_while_renewing(&sim, dir.path(), &refresh).await;
    abort_and_expect_abandoned(&c, "printers()", call).await;
    assert!(sim.sim.requests().iter().all(|r| r.path != "/app/printers"));
}

/// The renewal a request started goes on when the request is abandoned: the account server
/// may already have rotated the refresh token, and the new one must still reach auth.json.
#[tokio::test]
async fn an_abandoned_request_does_not_lose_the_rotated_refresh_token() {
    let sim = Sim::start().await;
    sim.sim.add_user("maker@example.com", "pw", None);
    sim.sim.set_token_endpoint_delay(Duration::from_millis(500));
    let refresh = sim.sim.issue_refresh_token("maker@example.com");
    let dir = tempfile::tempdir().unwrap();
    let (c, call) = list_while_renewing(&sim, dir.path(), &refresh).await;
    abort_and_expect_abandoned(&c, "printers()", call).await;
    let store = prusa_connect_mqtt::auth::TokenStore::new(dir.path());
    wait_until("the rotated refresh token stored", || {
        store
            .load()
            .is_some_and(|s| sim.sim.is_refresh_token_valid(&s.refresh_token))
    })
    .await;
    assert!(!sim.sim.is_refresh_token_valid(&refresh));
}

/// A printer's first feed read (no cursor) only places the cursor: one page, not twenty. A
/// catch-up from a cursor reads up to the cap and says when it reached it.
#[tokio::test]
async fn a_feed_without_a_cursor_costs_one_request_and_a_capped_catch_up_says_so() {
    use prusa_connect_mqtt::connect::{EVENTS_MAX_PAGES, EVENTS_PAGE};
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let many = EVENTS_PAGE * EVENTS_MAX_PAGES + 5;
    for n in 0..many {
        sim.sim.push_event(&uuid, "TEST_EVENT", json!({ "n": n }));
    }
    let c = client(&sim, TOKEN);
    let feed_requests = || {
        sim.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/events"))
            .count()
    };

    let first = c.feed(&uuid, None).await.unwrap();
    assert_eq!(feed_requests(), 1, "one page places the cursor");
    let newest = first.events.last().unwrap();
    assert_eq!(
        newest.raw["n"],
        json!(many - 1),
        "the newest event is on it"
    );
    assert!(!first.capped);

    sim.sim.clear_requests();
    let catch_up = c.feed(&uuid, Some(0.0)).await.unwrap();
    assert_eq!(feed_requests() as u64, EVENTS_MAX_PAGES);
    assert_eq!(catch_up.events.len() as u64, EVENTS_PAGE * EVENTS_MAX_PAGES);
    assert!(
        catch_up.capped,
        "events older than twenty pages are skipped"
    );

    sim.sim.clear_requests();
    let after = c.feed(&uuid, Some(newest.created + 1.0)).await.unwrap();
    assert_eq!(feed_requests(), 1);
    assert!(after.events.is_empty() && !after.capped);
}
