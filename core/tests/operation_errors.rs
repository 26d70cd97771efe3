//! A body's error is kept as its own type (downcastable), with its text for display.

use ephemeral::{
    EphemeralOptions, EphemeralResultCoordinator, EphemeralWorkCoordinator, OperationContext,
    ResultError, process_all,
};

#[derive(Debug, PartialEq)]
enum DbError {
    Timeout { after_ms: u64 },
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout { after_ms } => write!(f, "db timeout after {after_ms} ms"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn snapshots_and_echoes_keep_the_error_value() {
    let coordinator = EphemeralWorkCoordinator::new(
        |ms: u64, _ctx: OperationContext| async move { Err(DbError::Timeout { after_ms: ms }) },
        EphemeralOptions::default().max_tracked(1),
    )
    .expect("coordinator");
    coordinator.enqueue(250).await.expect("accepted");
    coordinator.enqueue(500).await.expect("accepted");
    coordinator.drain().await.expect("drained");

    let failed = coordinator.failed();
    let error = failed[0].error.as_ref().expect("an error");
    assert_eq!(
        error.downcast_ref(),
        Some(&DbError::Timeout { after_ms: 500 })
    );
    assert_eq!(failed[0].error.as_deref(), Some("db timeout after 500 ms"));

    let echo = &coordinator.echoes()[0];
    let evicted = echo.error.as_ref().expect("the evicted one failed too");
    assert_eq!(
        evicted.downcast_ref(),
        Some(&DbError::Timeout { after_ms: 250 })
    );
}

#[tokio::test(start_paused = true)]
async fn results_and_summaries_keep_the_error_value() {
    let coordinator = EphemeralResultCoordinator::new(
        |ms: u64, _ctx: OperationContext| async move {
            if ms == 0 {
                Ok(0)
            } else {
                Err(DbError::Timeout { after_ms: ms })
            }
        },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    let id = coordinator.enqueue(30).await.expect("accepted");
    match coordinator.wait_for_result(id).await {
        Err(ResultError::Failed { message, .. }) => {
            assert!(message.is::<DbError>());
            assert_eq!(message.to_string(), "db timeout after 30 ms");
        }
        other => panic!("expected the failure, got {other:?}"),
    }

    let summary = process_all([1u64, 0], 2, |ms: u64, _ctx: OperationContext| async move {
        if ms == 0 {
            Ok(())
        } else {
            Err(DbError::Timeout { after_ms: ms })
        }
    })
    .await
    .expect("ran");
    assert_eq!(summary.failures.len(), 1);
    assert_eq!(
        summary.failures[0].1.downcast_ref(),
        Some(&DbError::Timeout { after_ms: 1 })
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_text_without_a_value() {
    let coordinator = EphemeralWorkCoordinator::new(
        |_n: u32, _ctx: OperationContext| async move {
            if true {
                panic!("exploded");
            }
            Ok::<_, DbError>(())
        },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    coordinator.enqueue(1).await.expect("accepted");
    coordinator.drain().await.expect("drained");
    let failed = coordinator.failed();
    let error = failed[0].error.as_ref().expect("failed");
    assert!(failed[0].panicked);
    assert!(error.contains("exploded"), "{error}");
    assert!(error.downcast_ref::<DbError>().is_none());
}
