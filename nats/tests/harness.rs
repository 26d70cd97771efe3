//! The test harness itself: ports, restarts on the same port and store, stop, kill, and
//! no server left behind.

use std::time::Duration;

use ephemeral_nats::Nats;
use ephemeral_nats::testing::NatsServer;
use rustix::process::{Pid, test_kill_process};

fn alive(pid: u32) -> bool {
    let pid = Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    test_kill_process(pid).is_ok()
}

#[tokio::test]
async fn restart_keeps_the_port_and_the_store() {
    let mut server = NatsServer::start().await;
    let (port, store, first) = (server.port(), server.store_dir(), server.pid().unwrap());
    assert_ne!(port, 0);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
    // Something in the store that must survive: a JetStream stream.
    let nats = Nats::connect(&server.url()).await.unwrap();
    nats.jetstream()
        .create_stream(async_nats::jetstream::stream::Config {
            name: "KEPT".into(),
            subjects: vec!["kept.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    drop(nats);

    server.restart().await;
    let second = server.pid().unwrap();
    assert_ne!(first, second);
    assert!(!alive(first), "the old server is gone");
    assert_eq!((server.port(), server.store_dir()), (port, store));
    let nats = Nats::connect(&server.url()).await.unwrap();
    assert!(nats.jetstream().get_stream("KEPT").await.is_ok());

    server.stop().await;
    assert!(!alive(second));
    assert_eq!(server.pid(), None);
    server.start_again().await;
    let third = server.pid().unwrap();
    server.kill();
    assert!(!alive(third));
}

#[tokio::test]
async fn dropping_the_handle_kills_the_server() {
    let server = NatsServer::start().await;
    let pid = server.pid().unwrap();
    assert!(alive(pid));
    drop(server);
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_server_that_cannot_start_says_why() {
    let error = NatsServer::try_start_with(&["--no-such-flag"])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("did not start"), "{error}");
    assert!(
        error.contains("no-such-flag"),
        "the server's own output: {error}"
    );
}

#[tokio::test]
async fn servers_of_different_tests_do_not_collide() {
    let a = NatsServer::start().await;
    let b = NatsServer::start().await;
    assert_ne!(a.port(), b.port());
    let na = Nats::connect(&a.url()).await.unwrap();
    let nb = Nats::connect(&b.url()).await.unwrap();
    let mut sub = nb.subscribe("x").await.unwrap();
    na.publish("x", "only on a").await.unwrap();
    let quiet = tokio::time::timeout(
        Duration::from_millis(200),
        futures::StreamExt::next(&mut sub),
    )
    .await;
    assert!(quiet.is_err(), "{quiet:?}");
}
