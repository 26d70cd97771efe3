//! Retained state on NATS across real processes: the shared test bodies of
//! `ephemeral_bus::retained::conformance` (the bus runs the same ones) against a real
//! nats-server started here (random port on 127.0.0.1, stopped by pid when done).
//! `harness = false`: the binary re-executes itself as each child.

use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{Nats, NatsOptions};

fn main() {
    ephemeral_bus::retained::conformance::main(|| async {
        let server = NatsServer::start().await;
        let nats = Nats::connect_with(&server.url(), NatsOptions::default().prefix("conf"))
            .await
            .expect("connect to the test server");
        (nats, server)
    });
}
