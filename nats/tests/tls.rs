//! TLS with root and client certificates, against a server that verifies clients.

use std::path::{Path, PathBuf};

use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{ConnectKind, Nats, NatsError, NatsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let leaf = |names: Vec<String>, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
    }
}

fn kind(result: Result<Nats, NatsError>) -> ConnectKind {
    match result {
        Err(NatsError::Connect { kind, .. }) => kind,
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn root_and_client_certificates_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let arg = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let (cert, key, ca) = (arg(&pki.server_cert), arg(&pki.server_key), arg(&pki.ca));
    let server = NatsServer::start_with(&[
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
        "--tlscacert",
        &ca,
        "--tlsverify",
    ])
    .await;
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

    // A missing certificate file is a TLS setup error, named as such.
    let missing = NatsOptions::default()
        .require_tls(true)
        .root_certificates(dir.path().join("no-such-ca.pem"));
    assert_eq!(
        kind(Nats::connect_with(&url, missing).await),
        ConnectKind::Tls
    );
}
