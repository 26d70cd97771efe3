//! Property test: several readers of one `DropOldest` ring, joining, reading and leaving at
//! their own pace, each against a model buffer of its own of the ring's size — what the ring
//! promises every reader. Rings of up to 100 values span several blocks of the ring's storage,
//! so readers holding blocks, blocks being emptied and reused, and the claim over the oldest
//! value between a reader that took it and a sender dropping it are all exercised.

use std::collections::VecDeque;
use std::sync::Arc;

use ephemeral::lag::{Cursor, Ring, TryRecvError};
use ephemeral::{Buffer, Lagged, Overflow};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Push this many values.
    Push(u8),
    /// Reader `n % readers` reads this many times.
    Read(usize, u8),
    /// A new reader joins.
    Join,
    /// Reader `n % readers` leaves.
    Leave(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..40).prop_map(Op::Push),
        5 => (any::<usize>(), 1u8..60).prop_map(|(r, n)| Op::Read(r, n)),
        1 => Just(Op::Join),
        1 => any::<usize>().prop_map(Op::Leave),
    ]
}

/// One reader with a buffer of its own: what it must see.
struct Reader {
    cursor: Cursor<u32>,
    buffer: VecDeque<u32>,
    unreported: u64,
    delivered: u64,
    dropped: u64,
}

impl Reader {
    fn new(ring: &Arc<Ring<u32>>) -> Self {
        Self {
            cursor: ring.cursor(),
            buffer: VecDeque::new(),
            unreported: 0,
            delivered: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, value: u32, cap: usize) {
        if self.buffer.len() == cap {
            self.buffer.pop_front();
            self.unreported += 1;
            self.dropped += 1;
        }
        self.buffer.push_back(value);
    }

    /// What the next read must give.
    fn expected(&mut self) -> Result<Result<u32, Lagged>, TryRecvError> {
        if self.unreported > 0 {
            return Ok(Err(Lagged(std::mem::take(&mut self.unreported))));
        }
        match self.buffer.pop_front() {
            Some(value) => {
                self.delivered += 1;
                Ok(Ok(value))
            }
            None => Err(TryRecvError::Empty),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_reader_sees_what_a_buffer_of_its_own_would_give(
        cap in prop_oneof![Just(1usize), Just(5), Just(40), Just(100)],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let ring = Arc::new(Ring::new(Buffer::bounded(cap).unwrap(), Overflow::DropOldest));
        let mut readers = vec![Reader::new(&ring), Reader::new(&ring)];
        let mut next = 0u32;
        for op in ops {
            match op {
                Op::Push(n) => {
                    for _ in 0..n {
                        let reached = ring.try_push(next, None).unwrap();
                        prop_assert_eq!(reached, readers.len());
                        for reader in &mut readers {
                            reader.push(next, cap);
                        }
                        next += 1;
                    }
                }
                Op::Read(r, n) if !readers.is_empty() => {
                    let at = r % readers.len();
                    let reader = &mut readers[at];
                    for _ in 0..n {
                        let want = reader.expected();
                        let got = reader.cursor.try_recv();
                        prop_assert_eq!(got, want, "reader {}", at);
                    }
                    let stats = reader.cursor.stats();
                    prop_assert_eq!(
                        (stats.delivered, stats.dropped),
                        (reader.delivered, reader.dropped),
                        "reader {}", at
                    );
                }
                Op::Read(..) => {}
                Op::Join if readers.len() < 4 => readers.push(Reader::new(&ring)),
                Op::Join => {}
                Op::Leave(r) if !readers.is_empty() => {
                    let at = r % readers.len();
                    readers.remove(at);
                }
                Op::Leave(_) => {}
            }
            prop_assert!(ring.stats().buffered <= cap);
        }
        // After close, each reader drains exactly its model's buffer, then sees the end.
        ring.close();
        for (at, reader) in readers.iter_mut().enumerate() {
            loop {
                let want = match reader.expected() {
                    Err(TryRecvError::Empty) => Err(TryRecvError::Closed),
                    other => other,
                };
                let got = reader.cursor.try_recv();
                prop_assert_eq!(got, want, "reader {} draining", at);
                if got.is_err() {
                    break;
                }
            }
        }
    }
}
