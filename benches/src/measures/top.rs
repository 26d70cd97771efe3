//! What publishing state for `ephemeral top` costs a busy coordinator.
//!
//! Both sides run the same work coordinator (2M no-op items, concurrency 16, tracking on) on
//! the same runtime. Ours publishes its state (`publish_state`, the default 250 ms interval)
//! on a bus with a watcher: a second bus handle of this process (a separate peer, so frames
//! cross a real Unix socket) that polls every 250 ms and decodes every frame, for the whole
//! measurement. The baseline is the same coordinator not publishing, with the same watcher
//! polling. A turn of ours starts its clock once the watcher has its first frame, and a turn
//! whose frame never came (within 5 s) does not count.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator};
use ephemeral_bus::inspect::{PublishState, StateTransport, StateWatcher};
use ephemeral_bus::{Bus, BusOptions};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::{Config, measured, runtime};
use crate::baselines::pool;
use crate::report::Measurement;
use crate::stats::per_second;
use crate::turns::alternate;

const CONCURRENCY: usize = 16;
const POLL: Duration = Duration::from_millis(250);

/// The watched bus: the service's handle, and the watcher's tasks counting decoded frames.
struct Watched {
    service: Bus,
    frames: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Watched {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn watched(rt: &Runtime) -> Result<Watched, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let options = BusOptions::default().dir(dir.path());
    rt.block_on(async {
        let service = Bus::open_with("top-bench", options.clone())
            .await
            .map_err(|e| e.to_string())?;
        let tool = Bus::open_with("top-bench", options)
            .await
            .map_err(|e| e.to_string())?;
        let mut watcher = StateWatcher::new(&tool).await.map_err(|e| e.to_string())?;
        let frames = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&frames);
        let reader = tokio::spawn(async move {
            while let Some(frame) = watcher.next().await {
                if frame.is_ok() {
                    // Relaxed: a count read after the turn.
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Polls as `ephemeral top` does, once per interval.
        let polls = tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            loop {
                tick.tick().await;
                let _ = tool.send_poll().await;
            }
        });
        Ok(Watched {
            service,
            frames,
            tasks: vec![reader, polls],
            _dir: dir,
        })
    })
}

/// One turn: `items` no-op items through a fresh coordinator, publishing or not; items per
/// second, `None` if an item was lost or a publishing turn reached no watcher.
fn turn(rt: &Runtime, watched: &Watched, items: usize, publish: bool) -> Option<f64> {
    rt.block_on(async {
        let c = EphemeralWorkCoordinator::new(
            |item: usize, _ctx| async move {
                pool::noop(item).await;
                Ok::<_, Infallible>(())
            },
            EphemeralOptions::default().max_concurrency(CONCURRENCY),
        )
        .ok()?;
        let before = watched.frames.load(Ordering::Relaxed);
        let publisher = if publish {
            let publisher = c.publish_state(&watched.service, "bench").await.ok()?;
            // The clock starts once the watcher has the publisher's first frame: the turn
            // measures a coordinator whose state is being watched, however short it is (a
            // `--quick` turn of 0.2 s could otherwise end before the first poll came).
            if !first_frame(&watched.frames, before).await {
                return None;
            }
            Some(publisher)
        } else {
            None
        };
        let start = Instant::now();
        for i in 0..items {
            c.enqueue(i).await.ok()?;
        }
        c.drain().await.ok()?;
        let elapsed = start.elapsed();
        let sent = publisher.as_ref().map_or(0, |p| p.frames_sent());
        drop(publisher);
        if publish {
            // Let the last frame reach the watcher before counting.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let seen = watched.frames.load(Ordering::Relaxed) - before;
            eprintln!(
                "# {NAME}: {sent} frames sent, {seen} seen in {:.2}s",
                elapsed.as_secs_f64()
            );
            if seen == 0 {
                return None;
            }
        }
        (c.stats().completed == items as u64).then(|| per_second(items, elapsed))
    })
}

/// Waits until `frames` has moved past `before` (the watcher decoded a frame), at most
/// [`FIRST_FRAME_WAIT`]; whether it did.
async fn first_frame(frames: &AtomicU64, before: u64) -> bool {
    let deadline = Instant::now() + FIRST_FRAME_WAIT;
    while frames.load(Ordering::Relaxed) == before {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// How long a publishing turn waits for its first frame to reach the watcher (the watcher
/// polls every [`POLL`]).
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(5);

/// Coordinator throughput while publishing to a watched bus versus not publishing.
pub fn publish_overhead(cfg: &Config) -> Measurement {
    let rt = runtime();
    let items = cfg.pick(2_000_000, 400_000);
    let watched = match watched(&rt) {
        Ok(w) => w,
        Err(e) => {
            return Measurement {
                name: NAME,
                unit: "items/s",
                ours: None,
                baseline: BASELINE.to_owned(),
                baseline_value: None,
                higher_is_better: true,
                target: 0.95,
                same_run: true,
                note: Some(format!("ours: no watched bus: {e}")),
            };
        }
    };
    let turns = alternate(
        cfg.turns(),
        || turn(&rt, &watched, items, true),
        || turn(&rt, &watched, items, false).unwrap_or(0.0),
    );
    let mut m = measured(NAME, "items/s", BASELINE, &turns, true, 0.95);
    if m.ours.is_none() {
        m.note = Some("ours: a publishing turn lost items or no frame reached the watcher".into());
    }
    m
}

const NAME: &str = "top_publish_overhead";
const BASELINE: &str =
    "the same work coordinator (2M no-op items, concurrency 16) not publishing, same watcher";
