//! Connecting: errors by kind against real servers, and the options that must work.

use std::time::{Duration, Instant};

use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{ConnectKind, Nats, NatsError, NatsOptions};

fn kind(result: Result<Nats, NatsError>) -> ConnectKind {
    match result {
        Err(NatsError::Connect { kind, .. }) => kind,
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// A port nothing listens on: bound, then released.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_refused_port_is_refused_at_once() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let started = Instant::now();
    // A long connect timeout: the error must come from the refusal, not from waiting.
    let options = NatsOptions::default().connect_timeout(Duration::from_secs(30));
    let error = Nats::connect_with(&url, options).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let NatsError::Connect { kind, url: at, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*kind, ConnectKind::Refused);
    assert_eq!(at, &url);
    let text = error.to_string();
    assert!(text.contains("start a nats-server"), "{text}");
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn a_wrong_or_missing_password_is_an_auth_error() {
    let server = NatsServer::start_with(&["--user", "u", "--pass", "right"]).await;
    let url = server.url();

    let wrong = Nats::connect_with(&url, NatsOptions::default().user_password("u", "wrong")).await;
    assert_eq!(kind(wrong), ConnectKind::Auth);
    let missing = Nats::connect(&url).await;
    assert_eq!(kind(missing), ConnectKind::Auth);

    let right = Nats::connect_with(&url, NatsOptions::default().user_password("u", "right"))
        .await
        .expect("the right password connects");
    right.publish("auth.ok", "yes").await.unwrap();
}

#[tokio::test]
async fn credentials_in_the_url_are_sent_and_never_shown() {
    let server = NatsServer::start_with(&["--user", "alice", "--pass", "s3c@ret"]).await;
    let with = |userinfo: &str| {
        server
            .url()
            .replacen("nats://", &format!("nats://{userinfo}@"), 1)
    };

    // The `@` of the password percent-encoded, as in any URL.
    let nats = Nats::connect(&with("alice:s3c%40ret"))
        .await
        .expect("the URL's user and password connect");
    nats.publish("auth.ok", "yes").await.unwrap();
    assert!(nats.url().contains("alice:***@"), "{}", nats.url());
    assert!(!nats.url().contains("s3c"), "{}", nats.url());

    let wrong = Nats::connect(&with("alice:wrong-one")).await.unwrap_err();
    assert!(
        matches!(
            &wrong,
            NatsError::Connect {
                kind: ConnectKind::Auth,
                ..
            }
        ),
        "{wrong:?}"
    );
    assert!(!wrong.to_string().contains("wrong-one"), "{wrong}");
    assert!(!format!("{wrong:?}").contains("wrong-one"), "{wrong:?}");

    // Options' own credentials win over the URL's.
    Nats::connect_with(
        &with("alice:wrong-one"),
        NatsOptions::default().user_password("alice", "s3c@ret"),
    )
    .await
    .expect("the options' password is used");

    let server = NatsServer::start_with(&["--auth", "t0ken"]).await;
    let url = server.url().replacen("nats://", "nats://t0ken@", 1);
    let nats = Nats::connect(&url)
        .await
        .expect("a token in the URL connects");
    assert!(nats.url().contains("nats://***@"), "{}", nats.url());
}

#[tokio::test]
async fn a_token_is_sent() {
    let server = NatsServer::start_with(&["--auth", "s3cret"]).await;
    let url = server.url();
    assert_eq!(kind(Nats::connect(&url).await), ConnectKind::Auth);
    assert_eq!(
        kind(Nats::connect_with(&url, NatsOptions::default().token("guess")).await),
        ConnectKind::Auth
    );
    Nats::connect_with(&url, NatsOptions::default().token("s3cret"))
        .await
        .expect("the right token connects");
}

#[tokio::test]
async fn an_nkey_signs_the_nonce() {
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nkey.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: {} }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let server = NatsServer::start_with(&["-c", conf.to_str().unwrap()]).await;
    let url = server.url();
    let nats = Nats::connect_with(&url, NatsOptions::default().nkey(user.seed().unwrap()))
        .await
        .expect("the registered nkey connects");
    nats.publish("nkey.ok", "yes").await.unwrap();
    assert_eq!(
        kind(Nats::connect_with(&url, NatsOptions::default().nkey(stranger.seed().unwrap())).await),
        ConnectKind::Auth
    );
    assert_eq!(
        kind(Nats::connect_with(&url, NatsOptions::default().nkey("not a seed")).await),
        ConnectKind::Auth
    );
}

#[tokio::test]
async fn a_bad_url_is_bad_url() {
    for url in ["nats://:x", "nats://host:99999", "nats://a b"] {
        let error = Nats::connect(url).await.unwrap_err();
        assert!(
            matches!(
                error,
                NatsError::Connect {
                    kind: ConnectKind::BadUrl,
                    ..
                }
            ),
            "{url}: {error:?}"
        );
        assert!(error.to_string().contains("nats://host:4222"), "{error}");
    }
}

#[tokio::test]
async fn a_missing_credentials_file_is_named() {
    let server = NatsServer::start().await;
    let path = std::env::temp_dir().join("ephemeral-nats-no-such.creds");
    let error = Nats::connect_with(
        &server.url(),
        NatsOptions::default().credentials_file(&path),
    )
    .await
    .unwrap_err();
    let NatsError::Credentials {
        path: named,
        source,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(named, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(error.to_string().contains("ephemeral-nats-no-such.creds"));

    // A file that is not a credentials file.
    let bad = std::env::temp_dir().join(format!("ephemeral-nats-bad-{}.creds", std::process::id()));
    std::fs::write(&bad, "not a creds file").unwrap();
    let error = Nats::connect_with(&server.url(), NatsOptions::default().credentials_file(&bad))
        .await
        .unwrap_err();
    let _ = std::fs::remove_file(&bad);
    let NatsError::Credentials { source, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn tls_required_against_a_plain_server_is_a_tls_error() {
    let server = NatsServer::start().await;
    let options = NatsOptions::default()
        .require_tls(true)
        .connect_timeout(Duration::from_secs(5));
    let error = Nats::connect_with(&server.url(), options).await;
    assert_eq!(kind(error), ConnectKind::Tls);
}

#[tokio::test]
async fn after_giving_up_reconnecting_calls_fail_with_closed() {
    let mut server = NatsServer::start().await;
    let options = NatsOptions::default()
        .max_reconnects(2)
        .max_reconnect_delay(Duration::from_millis(50));
    let nats = Nats::connect_with(&server.url(), options).await.unwrap();
    server.kill();
    // Two attempts, 50 ms apart at most, against a port nothing listens on: the client
    // gives up within moments; generous for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match nats.publish("x", "y").await {
            Err(NatsError::Closed) => break,
            // Sent before the client noticed, or refused while it still tries.
            Ok(()) | Err(NatsError::Disconnected { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected Closed once the client gave up, got {other:?}"),
        }
    }
    let error = nats
        .request("x", "y", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(error, NatsError::Closed), "{error:?}");
    assert!(error.to_string().contains("reconnect"), "{error}");
    // Subscribing, serving and bridging say so too, not the client's bare "subscribe
    // failed: channel closed".
    let subscribed = nats.subscribe("x").await.map(drop).unwrap_err();
    assert!(matches!(subscribed, NatsError::Closed), "{subscribed:?}");
    let served = nats
        .serve("x", |_| async { Ok::<_, String>("") })
        .await
        .map(drop)
        .unwrap_err();
    assert!(matches!(served, NatsError::Closed), "{served:?}");
    let sink = ephemeral::SignalSink::default();
    let bridged = nats.bridge(&sink, "x.*").await.map(drop).unwrap_err();
    assert!(matches!(bridged, NatsError::Closed), "{bridged:?}");
}

#[tokio::test]
async fn a_bad_prefix_is_refused_before_connecting() {
    // Nothing listens there: the prefix must be checked first.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let error = Nats::connect_with(&url, NatsOptions::default().prefix("a.>"))
        .await
        .unwrap_err();
    assert!(matches!(error, NatsError::BadPrefix { .. }), "{error:?}");
}

#[tokio::test]
async fn the_server_is_described() {
    let server = NatsServer::start().await;
    let nats = Nats::connect_with(&server.url(), NatsOptions::default().name("describe"))
        .await
        .unwrap();
    assert!(nats.is_connected());
    assert_eq!(nats.max_payload(), 1024 * 1024);
    nats.require_server("2.11.0", "the tests").unwrap();
    let error = nats
        .require_server("99.0.0", "a future feature")
        .unwrap_err();
    let NatsError::ServerTooOld {
        have,
        need,
        feature,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(have, &nats.server_version());
    assert_eq!((*need, *feature), ("99.0.0", "a future feature"));
    assert_eq!(nats.stats().connects, 1);
    assert_eq!(nats.prefix(), "ephemeral");
}

/// A `ws://` URL to a server's plain client port (or to a server without a `websocket`
/// block) used to say only "i/o error: check the address": the message must name the
/// websocket handshake and the server's `websocket` block.
#[tokio::test]
async fn a_websocket_url_to_a_plain_port_names_websocket() {
    let server = NatsServer::start().await;
    for scheme in ["ws", "wss"] {
        let url = server.url().replacen("nats://", &format!("{scheme}://"), 1);
        let options = NatsOptions::default().connect_timeout(Duration::from_secs(10));
        let error = Nats::connect_with(&url, options).await.unwrap_err();
        let NatsError::Connect { kind, .. } = &error else {
            panic!("{scheme}: {error:?}");
        };
        let text = error.to_string();
        assert!(text.contains("websocket {"), "{scheme}: {text}");
        assert!(text.contains("nats://"), "{scheme}: {text}");
        assert_eq!(format!("{kind:?}"), "WebSocket", "{scheme}: {text}");
    }
    // Nothing listening stays a refusal, whatever the scheme.
    let url = format!("ws://127.0.0.1:{}", free_port());
    assert_eq!(kind(Nats::connect(&url).await), ConnectKind::Refused);
}
