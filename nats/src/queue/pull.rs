//! Pull requests with exact credit: how many jobs the server may still send this node.
//!
//! async-nats's pull streams ask for a fixed batch and refill at half of it, whatever the
//! caller has room for. Here every request asks for what there is room for, and the credit
//! still open is counted: each delivered job takes one, and the status that ends a request
//! (408 expired, 409, 423 pin lost; sent to the request's own reply subject
//! `<inbox>.<consumer>.<request>`) gives back what it did not bring (`Nats-Pending-Messages`).
//! With no request open nothing can arrive, so the count is reset to zero then: it can
//! never drift. A node never asks for more than it can hold.
//!
//! Each request also remembers when it was sent, so the wait until its first job arrived is
//! known: it bounds what a node can take (it holds at most its credit, so it takes at most
//! about credit ÷ wait jobs a second) and is reported in
//! [`IntakeStats`](super::IntakeStats).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::{Client, HeaderMap, StatusCode};
use bytes::Bytes;
use tokio::time::Instant;

/// How long after its expiry a request that got no status is taken to be gone (a server
/// that restarted forgets its waiting requests without a word).
const GRACE: Duration = Duration::from_secs(2);

/// One open pull request.
#[derive(Debug)]
struct Request {
    /// Jobs it may still bring (it asked for a batch; each delivered job takes one).
    left: usize,
    /// When the server lets it expire.
    expires: Instant,
    /// When it was sent.
    sent: Instant,
    /// Whether a job has arrived on it.
    answered: bool,
}

impl Request {
    fn new(batch: usize, sent: Instant, expiry: Duration) -> Self {
        Self {
            left: batch,
            expires: sent + expiry,
            sent,
            answered: false,
        }
    }
}

/// What a status message meant for the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// A request ended (expired, or refused); its credit is gone.
    Ended,
    /// Another node holds the partition's pin now.
    PinLost,
    /// JetStream did not answer (a server restarting, a leader election): pull again after
    /// a pause.
    Unavailable,
    /// The consumer is gone or unusable; pulling it again makes no sense until fixed.
    Broken(String),
    /// Nothing to do (heartbeat, unknown request).
    Ignore,
}

/// The pull requests of one consumer.
#[derive(Debug)]
pub(crate) struct Puller {
    /// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
    api: String,
    /// `<inbox>.<index>`: this consumer's replies.
    reply_base: String,
    /// The priority group (pinned partition consumers).
    group: Option<&'static str>,
    requests: HashMap<u64, Request>,
    /// Jobs the open requests may still bring.
    outstanding: usize,
    next: u64,
    /// The `Nats-Pin-Id` this node holds for the consumer, if any.
    pub(crate) pin: Option<String>,
}

impl Puller {
    pub(crate) fn new(
        stream: &str,
        consumer: &str,
        inbox: &str,
        index: usize,
        group: Option<&'static str>,
    ) -> Self {
        Self {
            api: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            reply_base: format!("{inbox}.{index}"),
            group,
            requests: HashMap::new(),
            outstanding: 0,
            next: 0,
            pin: None,
        }
    }

    /// Jobs the server may still send on open requests.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// How many requests are open.
    pub(crate) fn open(&self) -> usize {
        self.requests.len()
    }

    /// Asks for up to `batch` jobs, waiting at most `expiry` on the server.
    pub(crate) async fn request(
        &mut self,
        client: &Client,
        batch: usize,
        expiry: Duration,
    ) -> Result<(), async_nats::PublishError> {
        let mut body = format!(
            r#"{{"batch":{batch},"expires":{}"#,
            u64::try_from(expiry.as_nanos()).unwrap_or(u64::MAX)
        );
        if let Some(group) = self.group {
            body.push_str(&format!(r#","group":"{group}""#));
        }
        if let Some(pin) = &self.pin {
            // Pin ids are server-made alphanumerics; anything else is not sent back.
            if pin.bytes().all(|b| b.is_ascii_alphanumeric()) {
                body.push_str(&format!(r#","id":"{pin}""#));
            }
        }
        body.push('}');
        self.send(client, body, batch, expiry).await
    }

    /// Sends one pull request and keeps it open for up to `batch` jobs (`0`: a keep-alive).
    async fn send(
        &mut self,
        client: &Client,
        body: String,
        batch: usize,
        expiry: Duration,
    ) -> Result<(), async_nats::PublishError> {
        let id = self.next;
        self.next += 1;
        client
            .publish_with_reply(
                self.api.clone(),
                format!("{}.{id}", self.reply_base),
                Bytes::from(body),
            )
            .await?;
        self.requests
            .insert(id, Request::new(batch, Instant::now(), expiry));
        self.outstanding += batch;
        Ok(())
    }

    /// Keeps this node's pin on the consumer without taking a job: a request naming the pin
    /// that can deliver nothing (`max_bytes` 1 is smaller than any job; `no_wait`). It asks
    /// for no credit, and ends at once with 409 "Message Size Exceeds MaxBytes" when jobs are
    /// waiting, or with 408 after `expiry` when none are.
    ///
    /// Checked against nats-server 2.15.1 (priority timeout 2 s): such a request every 0.6 s
    /// or every 1.5 s kept the pin for 6 to 7 s, while another client pulling the group all
    /// along got nothing, and the next job then came to the pin holder, with its delivery
    /// count untouched (1). Without the pin id the same request did not keep the pin (lost
    /// after 2 s), and with no request at all the pin was lost exactly at the timeout. Does
    /// nothing without a pin (there is nothing to keep).
    pub(crate) async fn keep_alive(
        &mut self,
        client: &Client,
        expiry: Duration,
    ) -> Result<(), async_nats::PublishError> {
        let (Some(group), Some(pin)) = (self.group, self.pin.as_deref()) else {
            return Ok(());
        };
        if !pin.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(());
        }
        let body = format!(
            r#"{{"batch":1,"max_bytes":1,"no_wait":true,"expires":{},"group":"{group}","id":"{pin}"}}"#,
            u64::try_from(expiry.as_nanos()).unwrap_or(u64::MAX)
        );
        // Open (so no other request is sent for the partition until it ends), no credit.
        self.send(client, body, 0, expiry).await
    }

    /// A job arrived (jobs carry their own subject, not the request's, so they are not
    /// told apart by request). Returns how long its request waited for it when it is the
    /// request's first job.
    pub(crate) fn on_job(&mut self) -> Option<Duration> {
        self.outstanding = self.outstanding.saturating_sub(1);
        // A job arrives on its original subject, not on its request's reply subject, so
        // it is counted against the oldest request still owed jobs: the server serves a
        // consumer's waiting requests first come, first served. A request that got its
        // whole batch is over (the server sends no status for it), and must not count as
        // open: a keyed partition with no request open loses its pin.
        let mut waited = None;
        if let Some(id) = self
            .requests
            .iter()
            .filter(|(_, r)| r.left > 0)
            .map(|(id, _)| *id)
            .min()
            && let Some(request) = self.requests.get_mut(&id)
        {
            request.left -= 1;
            if !request.answered {
                request.answered = true;
                waited = Some(request.sent.elapsed());
            }
            if request.left == 0 {
                self.requests.remove(&id);
            }
        }
        self.settle();
        waited
    }

    /// With no request open, nothing more can come.
    fn settle(&mut self) {
        if self.requests.is_empty() {
            self.outstanding = 0;
        }
    }

    /// Forgets request `id` whose last `left` jobs will not come.
    fn end(&mut self, id: u64, left: Option<usize>) -> bool {
        let Some(request) = self.requests.remove(&id) else {
            return false;
        };
        let left = left.unwrap_or(request.left).min(request.left);
        self.outstanding = self.outstanding.saturating_sub(left);
        self.settle();
        true
    }

    /// A status arrived on request `id`.
    pub(crate) fn on_status(
        &mut self,
        id: u64,
        status: StatusCode,
        description: Option<&str>,
        headers: Option<&HeaderMap>,
    ) -> Status {
        if status == StatusCode::IDLE_HEARTBEAT {
            return Status::Ignore;
        }
        let left = headers
            .and_then(|h| h.get("Nats-Pending-Messages"))
            .and_then(|v| v.as_str().parse::<usize>().ok());
        // Whatever the status, the request is over: the server answers a request with a
        // status only when it stops serving it (408 expired, 409 refused or interrupted,
        // 423 pin mismatch).
        let known = self.end(id, left);
        let description = description.unwrap_or("");
        if status == StatusCode::PIN_ID_MISMATCH {
            self.pin = None;
            return Status::PinLost;
        }
        if status == StatusCode::NO_RESPONDERS {
            return Status::Unavailable;
        }
        if description.contains("Consumer Deleted")
            || description.contains("Consumer is push based")
            || description.starts_with("Exceeded MaxRequest")
        {
            return Status::Broken(format!("{status} {description}"));
        }
        if known { Status::Ended } else { Status::Ignore }
    }

    /// Forgets requests past their expiry plus a grace with no status: the server that
    /// held them is gone. Returns whether any were dropped.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let gone: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.expires + GRACE <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.end(*id, None);
        }
        !gone.is_empty()
    }

    /// Forgets every request (after a reconnect the server has none of them).
    pub(crate) fn reset(&mut self) {
        self.requests.clear();
        self.outstanding = 0;
    }
}

/// `(consumer index, request id)` of a reply subject `<inbox>.<index>.<id>`.
pub(crate) fn route(inbox: &str, subject: &str) -> Option<(usize, u64)> {
    let rest = subject.strip_prefix(inbox)?.strip_prefix('.')?;
    let (index, id) = rest.split_once('.')?;
    Some((index.parse().ok()?, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_route_to_their_request() {
        assert_eq!(route("_INBOX.abc", "_INBOX.abc.3.17"), Some((3, 17)));
        assert_eq!(route("_INBOX.abc", "_INBOX.abd.3.17"), None);
        assert_eq!(route("_INBOX.abc", "_INBOX.abc.x.1"), None);
    }

    fn request(p: &mut Puller, id: u64, batch: usize, expires: Instant) {
        p.requests.insert(
            id,
            Request {
                expires,
                ..Request::new(batch, Instant::now(), Duration::ZERO)
            },
        );
        p.outstanding += batch;
    }

    #[test]
    fn credit_follows_jobs_and_statuses() {
        let mut p = Puller::new("S", "c", "_INBOX.x", 0, None);
        let far = Instant::now() + Duration::from_secs(60);
        request(&mut p, 0, 3, far);
        request(&mut p, 1, 2, far);
        assert_eq!(p.outstanding(), 5);
        p.on_job();
        assert_eq!(p.outstanding(), 4);
        let mut left = HeaderMap::new();
        left.insert("Nats-Pending-Messages", "2");
        assert_eq!(
            p.on_status(1, StatusCode::TIMEOUT, Some("Request Timeout"), Some(&left)),
            Status::Ended
        );
        assert_eq!(p.outstanding(), 2);
        p.on_job();
        assert_eq!(p.outstanding(), 1);
        // The last request ends without a count: nothing can come any more.
        assert_eq!(
            p.on_status(0, StatusCode::TIMEOUT, None, None),
            Status::Ended
        );
        assert_eq!((p.outstanding(), p.open()), (0, 0));
        assert_eq!(
            p.on_status(9, StatusCode::TIMEOUT, None, None),
            Status::Ignore
        );
        p.pin = Some("abc".into());
        assert_eq!(
            p.on_status(9, StatusCode::PIN_ID_MISMATCH, None, None),
            Status::PinLost
        );
        assert_eq!(p.pin, None);
    }

    #[test]
    fn a_request_that_got_its_whole_batch_is_over() {
        let mut p = Puller::new("S", "c", "_INBOX.x", 0, None);
        let far = Instant::now() + Duration::from_secs(60);
        request(&mut p, 0, 2, far);
        request(&mut p, 1, 1, far);
        p.on_job();
        p.on_job();
        assert_eq!((p.open(), p.outstanding()), (1, 1));
        p.on_job();
        assert_eq!((p.open(), p.outstanding()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_job_of_a_request_tells_how_long_it_waited() {
        let mut p = Puller::new("S", "c", "_INBOX.x", 0, None);
        let far = Instant::now() + Duration::from_secs(60);
        request(&mut p, 0, 2, far);
        tokio::time::advance(Duration::from_millis(3)).await;
        request(&mut p, 1, 2, far);
        tokio::time::advance(Duration::from_millis(2)).await;
        // Jobs count against the oldest request first: request 0 sent 5 ms ago.
        assert_eq!(p.on_job(), Some(Duration::from_millis(5)));
        assert_eq!(p.on_job(), None, "not the first job of request 0");
        tokio::time::advance(Duration::from_millis(1)).await;
        // Request 1, sent 3 ms ago.
        assert_eq!(p.on_job(), Some(Duration::from_millis(3)));
        assert_eq!(p.on_job(), None);
        assert_eq!(p.on_job(), None, "no request open: nothing waited");
    }

    #[test]
    fn silent_requests_expire_after_a_grace() {
        let mut p = Puller::new("S", "c", "_INBOX.x", 0, None);
        let now = Instant::now();
        request(&mut p, 0, 3, now);
        assert!(!p.expire(now));
        assert!(p.expire(now + GRACE + Duration::from_millis(1)));
        assert_eq!(p.outstanding(), 0);
    }
}
