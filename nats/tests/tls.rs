//! TLS with root and client certificates, against a server that verifies clients.

use ephemeral_nats::testing::{NatsServer, TestPki};
use ephemeral_nats::{ConnectKind, Nats, NatsError, NatsOptions};

fn kind(result: Result<Nats, NatsError>) -> ConnectKind {
    match result {
        Err(NatsError::Connect { kind, .. }) => kind,
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn root_and_client_certificates_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(dir.path());
    let args = pki.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = NatsServer::start_with(&args).await;
    let url = server.url();

    let good = NatsOptions::default()
        .require_tls(true)
        .root_certificates(&pki.ca)
        .client_certificate(&pki.client_cert, &pki.client_key);
    let nats = Nats::connect_with(&url, good)
        .await
        .expect("TLS with both certificates");
    let mut sub = nats.subscribe("secure").await.unwrap();
    nats.publish("secure", "hello").await.unwrap();
    let m = futures::StreamExt::next(&mut sub).await.unwrap().unwrap();
    assert_eq!(m.payload_str(), Some("hello"));

    // Without the CA the server's certificate is not trusted.
    let no_root = NatsOptions::default()
        .require_tls(true)
        .client_certificate(&pki.client_cert, &pki.client_key);
    assert_eq!(
        kind(Nats::connect_with(&url, no_root).await),
        ConnectKind::Tls
    );

    // Without a client certificate the server refuses the handshake.
    let no_client = NatsOptions::default()
        .require_tls(true)
        .root_certificates(&pki.ca);
    // (TLS 1.3: the server's "certificate required" alert.)
    assert_eq!(
        kind(Nats::connect_with(&url, no_client).await),
        ConnectKind::Tls
    );

    // A missing certificate file is named, as a missing credentials file is.
    let missing = NatsOptions::default()
        .require_tls(true)
        .root_certificates(dir.path().join("no-such-ca.pem"));
    assert!(matches!(
        Nats::connect_with(&url, missing).await,
        Err(NatsError::Certificate { .. })
    ));
}

#[tokio::test]
async fn a_certificate_given_requires_tls_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(dir.path());
    // A server without TLS: the client used to connect in plain text, never reading the
    // files, so a certificate given (even a missing one) was silently ignored.
    let plain = NatsServer::start().await;
    let with_root = NatsOptions::default().root_certificates(&pki.ca);
    assert_eq!(
        kind(Nats::connect_with(&plain.url(), with_root).await),
        ConnectKind::Tls
    );
    let with_client = NatsOptions::default().client_certificate(&pki.client_cert, &pki.client_key);
    assert_eq!(
        kind(Nats::connect_with(&plain.url(), with_client).await),
        ConnectKind::Tls
    );
    let missing = dir.path().join("no-such-ca.pem");
    let error = Nats::connect_with(
        &plain.url(),
        NatsOptions::default().root_certificates(&missing),
    )
    .await
    .unwrap_err();
    // Named in the message, as a credentials file is.
    assert!(error.to_string().contains("no-such-ca.pem"), "{error}");
    assert!(
        matches!(&error, NatsError::Certificate { path, .. } if *path == missing),
        "{error:?}"
    );

    // Against a TLS server, the certificates alone are enough: no `require_tls` needed.
    let args = pki.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tls = NatsServer::start_with(&args).await;
    let both = NatsOptions::default()
        .root_certificates(&pki.ca)
        .client_certificate(&pki.client_cert, &pki.client_key);
    let nats = Nats::connect_with(&tls.url(), both)
        .await
        .expect("TLS with both certificates");
    assert!(nats.is_connected());
}
