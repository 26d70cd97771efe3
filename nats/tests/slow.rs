//! A subscriber the server cuts off as a slow consumer: the loss surfaces as `Lagged`.

mod support;

use std::time::Duration;

use ephemeral::Buffer;
use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{Nats, NatsOptions, NatsStats};
use tokio::sync::oneshot;

#[tokio::test]
async fn a_slow_consumer_cut_off_by_the_server_sees_lagged() {
    // A small outbound allowance per client: a burst the subscriber does not read overflows
    // it, and the server closes the subscriber's connection (which then reconnects).
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("slow.conf");
    std::fs::write(&conf, "max_pending: 65536\nmax_payload: 4096\n").unwrap();
    let server = NatsServer::start_with(&["-c", conf.to_str().unwrap()]).await;
    let url = server.url();
    let options = NatsOptions::default().max_reconnect_delay(Duration::from_millis(20));
    let publisher = Nats::connect_with(&url, options.clone()).await.unwrap();

    // The subscriber lives on a runtime of its own, which the test stalls: while it sleeps,
    // nothing reads its socket.
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (stalled_tx, stalled_rx) = oneshot::channel::<()>();
    let (back_tx, back_rx) = oneshot::channel::<()>();
    let (last_tx, last_rx) = oneshot::channel::<u64>();
    let subscriber = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let nats = Nats::connect_with(&url, options).await.unwrap();
            let mut sub = nats
                .subscribe_with("burst", Buffer::Unbounded)
                .await
                .unwrap();
            ready_tx.send(()).unwrap();
            stalled_rx.await.unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            support::eventually("the subscriber cut off and back", || {
                nats.stats().disconnects > 0 && nats.is_connected()
            })
            .await;
            // A round trip: the re-subscription is known to the server.
            drop(nats.subscribe("sync").await.unwrap());
            back_tx.send(()).unwrap();
            let last = last_rx.await.unwrap();
            let (mut delivered, mut lagged) = (0u64, 0u64);
            loop {
                match support::next(&mut sub).await {
                    Ok(m) => {
                        delivered += 1;
                        if m.id() == last {
                            break;
                        }
                    }
                    Err(lag) => lagged += lag.count(),
                }
            }
            (delivered, lagged, nats.stats())
        })
    });
    ready_rx.await.unwrap();
    stalled_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // 4 MB into a 64 KiB allowance (and the socket buffers) while the subscriber sleeps.
    let payload = vec![b'x'; 2048];
    let mut sent = 0u64;
    for _ in 0..2000 {
        publisher.publish("burst", payload.clone()).await.unwrap();
        sent += 1;
    }
    back_rx.await.unwrap();
    publisher.publish("burst", "last").await.unwrap();
    let last = sent + 1;
    last_tx.send(last).unwrap();
    let (delivered, lagged, stats): (u64, u64, NatsStats) =
        tokio::task::spawn_blocking(move || subscriber.join().unwrap())
            .await
            .unwrap();
    eprintln!("sent {last}: delivered {delivered}, reported lost {lagged}, {stats:?}");
    assert!(
        stats.disconnects > 0,
        "the server never cut the subscriber off"
    );
    assert!(lagged > 0, "the cut-off lost messages");
    assert_eq!(
        delivered + lagged,
        last,
        "every number delivered or reported lost"
    );
}
