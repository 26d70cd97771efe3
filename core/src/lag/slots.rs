//! `Slots<T>`: the ring's values, in blocks that readers can read without the ring's lock.
//!
//! The ring's positions `head..tail` map onto a queue of blocks of [`BLOCK`] cells; each cell
//! has a small mutex of its own. The ring's lock guards the queue (which blocks, where the
//! oldest value is), so a sender pushes and removes under it as before; a reader, under the
//! ring's lock, only takes the blocks that hold the positions it is to read (one `Arc` per
//! block, not a copy per value), and then reads each value under its cell's lock alone. A
//! reader copying values thus never holds the ring's lock, and the senders pushing into it
//! never wait for such a copy (a value's clone is user code, and takes as long as it takes).
//!
//! A cell's value leaves it when the ring removes the position (it goes to the caller, to be
//! dropped after the ring's lock is released) or when the ring's only reader moves it out: a
//! bounded ring holds at most its capacity of values, as before, and a block a reader still
//! holds keeps nothing but empty cells alive. An emptied block nobody else holds is reused
//! for the next positions, so a ring in use allocates nothing.
//!
//! A reader reads a cell only at a position it was given under the ring's lock, after the
//! value was written there (under the same lock). Whether the value is still there when it
//! reads is the lag model's question (`consumed`, see the ring's docs), not the cell's: the
//! cell answers with `None` once the position was removed.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use crate::sync::{Mutex, lock};

/// Positions per block.
#[cfg(not(ephemeral_loom))]
pub(super) const BLOCK: usize = 32;
/// Small under loom, so that the models cross block boundaries.
#[cfg(ephemeral_loom)]
pub(super) const BLOCK: usize = 2;

/// One position's value and the instant from which it must not be delivered.
pub(super) struct Cell<T> {
    pub(super) value: Option<T>,
    pub(super) expires: Option<Instant>,
}

/// [`BLOCK`] consecutive positions.
pub(super) struct Block<T> {
    cells: [Mutex<Cell<T>>; BLOCK],
}

impl<T> Block<T> {
    fn new() -> Self {
        Self {
            cells: std::array::from_fn(|_| {
                Mutex::new(Cell {
                    value: None,
                    expires: None,
                })
            }),
        }
    }

    /// The cell at `index` (below [`BLOCK`]).
    pub(super) fn cell(&self, index: usize) -> &Mutex<Cell<T>> {
        &self.cells[index]
    }
}

/// Consecutive positions of one block that a reader was given: `len` positions from `pos`,
/// in cells from `index` on.
pub(super) struct Segment<T> {
    pub(super) block: Arc<Block<T>>,
    pub(super) index: usize,
    pub(super) pos: u64,
    pub(super) end: u64,
}

/// The ring's values at positions `head..head + len` (the ring keeps `head`).
pub(super) struct Slots<T> {
    blocks: VecDeque<Arc<Block<T>>>,
    /// The cell of `blocks[0]` that holds the oldest position.
    first: usize,
    len: usize,
    /// An emptied block that no reader holds, for the next positions.
    spare: Option<Arc<Block<T>>>,
}

impl<T> Slots<T> {
    pub(super) fn new() -> Self {
        Self {
            blocks: VecDeque::new(),
            first: 0,
            len: 0,
            spare: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The block and cell of the `i`-th oldest position.
    fn locate(&self, i: usize) -> (&Arc<Block<T>>, usize) {
        let at = self.first + i;
        (&self.blocks[at / BLOCK], at % BLOCK)
    }

    /// Appends a value at the next position.
    pub(super) fn push_back(&mut self, value: T, expires: Option<Instant>) {
        let at = self.first + self.len;
        if at == self.blocks.len() * BLOCK {
            let block = self.spare.take().unwrap_or_else(|| Arc::new(Block::new()));
            self.blocks.push_back(block);
        }
        let mut cell = lock(self.blocks[at / BLOCK].cell(at % BLOCK));
        cell.value = Some(value);
        cell.expires = expires;
        drop(cell);
        self.len += 1;
    }

    /// Removes the oldest position, and returns its value unless its only reader moved it
    /// out already (the caller drops it after the ring's lock).
    pub(super) fn pop_front(&mut self) -> Option<Option<T>> {
        if self.len == 0 {
            return None;
        }
        let value = {
            let mut cell = lock(self.blocks[0].cell(self.first));
            cell.expires = None;
            cell.value.take()
        };
        self.len -= 1;
        self.first += 1;
        if self.first == BLOCK {
            // Every cell of the oldest block is gone: it leaves the queue, and is kept for
            // the next positions when no reader holds it.
            self.first = 0;
            if let Some(block) = self.blocks.pop_front()
                && Arc::strong_count(&block) == 1
            {
                self.spare = Some(block);
            }
        }
        Some(value)
    }

    /// Whether the `i`-th oldest position is in cell `index` of `block`.
    pub(super) fn holds(&self, i: usize, block: &Arc<Block<T>>, index: usize) -> bool {
        i < self.len && {
            let (at, at_index) = self.locate(i);
            at_index == index && Arc::ptr_eq(at, block)
        }
    }

    /// The expiry of the oldest position's value, if any position is left.
    pub(super) fn front_expires(&self) -> Option<Option<Instant>> {
        if self.len == 0 {
            return None;
        }
        let (block, index) = self.locate(0);
        Some(lock(block.cell(index)).expires)
    }

    /// The blocks holding the `i`-th to `j`-th oldest positions (`i..j`), `i` being position
    /// `pos`, as segments for a reader.
    pub(super) fn segments(
        &self,
        i: usize,
        j: usize,
        mut pos: u64,
    ) -> impl Iterator<Item = Segment<T>> + '_ {
        let mut at = self.first + i;
        let stop = self.first + j;
        std::iter::from_fn(move || {
            if at >= stop {
                return None;
            }
            let index = at % BLOCK;
            let n = (BLOCK - index).min(stop - at);
            let segment = Segment {
                block: Arc::clone(&self.blocks[at / BLOCK]),
                index,
                pos,
                end: pos + n as u64,
            };
            at += n;
            pos += n as u64;
            Some(segment)
        })
    }

    /// Calls `f` on the values still held from the `i`-th oldest position on.
    pub(super) fn for_each_from(&self, i: usize, mut f: impl FnMut(&T)) {
        for k in i..self.len {
            let (block, index) = self.locate(k);
            if let Some(value) = &lock(block.cell(index)).value {
                f(value);
            }
        }
    }
}

#[cfg(all(test, not(ephemeral_loom)))]
mod tests {
    use super::*;

    fn read(segment: &Segment<u32>) -> Vec<(u64, Option<u32>)> {
        (segment.pos..segment.end)
            .zip(segment.index..)
            .map(|(pos, i)| (pos, lock(segment.block.cell(i)).value))
            .collect()
    }

    #[test]
    fn positions_cross_blocks_and_emptied_blocks_are_reused() {
        let mut slots = Slots::new();
        for n in 0..(BLOCK as u32 + 5) {
            slots.push_back(n, None);
        }
        assert_eq!(slots.len(), BLOCK + 5);
        // Positions 3.. of the ring, which starts at position 100.
        let segments: Vec<_> = slots.segments(3, BLOCK + 2, 103).collect();
        assert_eq!(segments.len(), 2);
        let values: Vec<_> = segments.iter().flat_map(read).collect();
        let expected: Vec<_> = (3..BLOCK as u32 + 2)
            .map(|n| (100 + u64::from(n), Some(n)))
            .collect();
        assert_eq!(values, expected);
        drop(segments);

        let first = Arc::as_ptr(&slots.blocks[0]);
        for n in 0..BLOCK as u32 {
            assert_eq!(slots.pop_front(), Some(Some(n)));
        }
        // The first block was emptied and nobody holds it: it is kept for reuse.
        assert_eq!(slots.spare.as_ref().map(Arc::as_ptr), Some(first));
        for n in 0..BLOCK as u32 {
            slots.push_back(1000 + n, None);
        }
        assert!(slots.spare.is_none());
        assert_eq!(slots.len(), BLOCK + 5);
        let mut seen = Vec::new();
        slots.for_each_from(0, |v| seen.push(*v));
        let block = BLOCK as u32;
        let expected: Vec<u32> = (block..block + 5).chain(1000..1000 + block).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_block_a_reader_holds_is_not_reused_and_its_cells_are_emptied() {
        let mut slots = Slots::new();
        for n in 0..BLOCK as u32 {
            slots.push_back(n, None);
        }
        let held: Vec<_> = slots.segments(0, 1, 0).collect();
        for _ in 0..BLOCK {
            assert!(slots.pop_front().is_some());
        }
        assert!(slots.spare.is_none());
        assert_eq!(read(&held[0]), [(0, None)]);
        assert_eq!(slots.pop_front(), None);
        slots.push_back(7, Some(Instant::now()));
        assert!(slots.front_expires().is_some_and(|at| at.is_some()));
    }

    #[test]
    fn emptying_the_ring_keeps_filling_the_current_block() {
        let mut slots = Slots::new();
        slots.push_back(1, None);
        slots.push_back(2, None);
        assert_eq!(slots.pop_front(), Some(Some(1)));
        assert_eq!(slots.pop_front(), Some(Some(2)));
        assert_eq!(slots.len(), 0);
        slots.push_back(3, None);
        let segments: Vec<_> = slots.segments(0, 1, 2).collect();
        assert_eq!(read(&segments[0]), [(2, Some(3))]);
    }
}
