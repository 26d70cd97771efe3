//! Per-customer ordering: one customer's operations run strictly one after another, in the
//! order they were enqueued, while different customers run in parallel, and a slow customer
//! never holds the others up.
//!
//! `cargo run -p ephemeral-examples --bin keyed_customers`; it finishes at once. The run uses
//! tokio's paused clock (as the tests do), so the times it prints are exact, and so is the
//! check at its end that alice and bob were done while carol's slow bank still held her
//! second operation: on a real clock that would be a race against a busy machine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let balances = Arc::new(Mutex::new(
        std::collections::BTreeMap::<&'static str, i64>::new(),
    ));
    let log = Arc::new(Mutex::new(Vec::new()));
    // When each customer's last operation finished.
    let finished = Arc::new(Mutex::new(
        std::collections::BTreeMap::<&'static str, u128>::new(),
    ));

    let coordinator = {
        let (balances, log, finished) = (balances.clone(), log.clone(), finished.clone());
        EphemeralKeyedWorkCoordinator::new(
            move |(customer, op): (&'static str, Op), _ctx: OperationContext| {
                let (balances, log, finished) = (balances.clone(), log.clone(), finished.clone());
                async move {
                    // "carol" talks to a slow bank; the others are quick.
                    let delay = if customer == "carol" { 200 } else { 30 };
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let mut balances = balances.lock().map_err(|_| "balances lock poisoned")?;
                    let balance = balances.entry(customer).or_default();
                    match op {
                        Op::Deposit(n) => *balance += n,
                        // Correct only because this customer's operations never overlap
                        // or reorder: the withdrawal sees the deposit before it.
                        Op::Withdraw(n) if *balance >= n => *balance -= n,
                        Op::Withdraw(n) => return Err(format!("{customer}: cannot withdraw {n}")),
                    }
                    let at = start.elapsed().as_millis();
                    log.lock().map_err(|_| "log lock poisoned")?.push(format!(
                        "{at:>4} ms  {customer:<6} {op:?} -> balance {balance}"
                    ));
                    finished
                        .lock()
                        .map_err(|_| "lock poisoned")?
                        .insert(customer, at);
                    Ok::<_, String>(())
                }
            },
            EphemeralOptions::default().max_concurrency(4),
        )?
    };

    let ops = [
        ("alice", Op::Deposit(100)),
        ("carol", Op::Deposit(50)),
        ("bob", Op::Deposit(20)),
        ("alice", Op::Withdraw(70)),
        ("carol", Op::Withdraw(50)),
        ("bob", Op::Deposit(5)),
        ("alice", Op::Deposit(10)),
        ("bob", Op::Withdraw(25)),
    ];
    for (customer, op) in ops {
        coordinator.enqueue(customer, (customer, op)).await?;
    }
    coordinator.drain().await?;

    println!("in the order the operations finished:");
    for line in log.lock().map_err(|_| "log lock poisoned")?.iter() {
        println!("  {line}");
    }
    println!(
        "final balances: {:?}",
        balances.lock().map_err(|_| "lock poisoned")?
    );
    let stats = coordinator.stats();
    println!(
        "{} operations, {} completed, {} failed",
        stats.accepted, stats.completed, stats.failed
    );
    let finished = finished.lock().map_err(|_| "lock poisoned")?;
    let at = |customer| finished.get(customer).copied().unwrap_or_default();
    println!(
        "alice was done at {} ms and bob at {} ms, while carol's slow bank kept her busy until {} ms: a busy key never blocks the others",
        at("alice"),
        at("bob"),
        at("carol")
    );
    // What this example shows, checked (CI runs it with its output discarded): each
    // customer's operations finished in the order they were enqueued (so every withdrawal saw
    // the deposit before it and none failed), and alice and bob were both done before carol's
    // slow second operation finished.
    let log = log.lock().map_err(|_| "log lock poisoned")?;
    for customer in ["alice", "bob", "carol"] {
        // A log line reads "<at> ms <customer> <op> -> balance <n>".
        let finished: Vec<String> = log
            .iter()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|fields| fields.get(2) == Some(&customer))
            .filter_map(|fields| fields.get(3).map(|op| (*op).to_owned()))
            .collect();
        let enqueued: Vec<String> = ops
            .iter()
            .filter(|(c, _)| *c == customer)
            .map(|(_, op)| format!("{op:?}"))
            .collect();
        if finished != enqueued {
            return Err(format!(
                "{customer}'s operations finished as {finished:?}, not in the order enqueued {enqueued:?}"
            )
            .into());
        }
    }
    if stats.completed != 8 || stats.failed != 0 || at("alice").max(at("bob")) >= at("carol") {
        return Err(format!(
            "expected 8 operations completed, none failed, alice and bob done before carol; \
             saw {} completed, {} failed, alice at {} ms, bob at {} ms, carol at {} ms",
            stats.completed,
            stats.failed,
            at("alice"),
            at("bob"),
            at("carol")
        )
        .into());
    }
    Ok(())
}
