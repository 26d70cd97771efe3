//! Column widths and cells of the full-screen view's tables: each column as wide as its
//! content, and when the terminal is too narrow for that, text gives way before numbers.

use ratatui::layout::{Alignment, Constraint};
use ratatui::style::Stylize;
use ratatui::text::Line;
use ratatui::widgets::{Cell, Row};

use super::plain::Align;

/// Cells between the columns of the coordinators' table.
pub(super) const COORDINATOR_SPACING: u16 = 2;
/// Cells between the columns of the signals' table.
pub(super) const SIGNAL_SPACING: u16 = 1;
/// Cells between the columns of the operations' table.
pub(super) const OPERATION_SPACING: u16 = 1;
/// The order in which the coordinators' columns are left out of a narrow table (indices
/// into `COORDINATOR_HEADERS`): DEFERRED BY, LIMIT, P50, TYPE, PROCESS, DONE/S, P99, FAIL/S,
/// RUN, PEND. NAME always stays.
pub(super) const COORDINATOR_DROP: [usize; 10] = [10, 9, 7, 2, 0, 5, 8, 6, 3, 4];
/// The narrowest a text column is cut to when the columns do not fit.
const MIN_TEXT: usize = 4;

/// The columns of a table that fit its width, and their widths.
pub(super) struct Fit {
    /// The indices of the columns shown, in order.
    pub(super) shown: Vec<usize>,
    /// The width of each shown column.
    pub(super) widths: Vec<Constraint>,
}

impl Fit {
    /// The items of the shown columns, in order (headers or the cells of one row).
    pub(super) fn pick<T: Clone>(&self, all: &[T]) -> Vec<T> {
        self.shown
            .iter()
            .filter_map(|&i| all.get(i).cloned())
            .collect()
    }
}

/// The columns of a table `width` cells wide inside its borders, `spacing` cells between
/// columns, and their widths: each column as wide as its widest cell (header included), at
/// most 40, but column `flex`, which takes what is left (and gives way first when the
/// terminal is narrow). When the others do not fit even so (80 columns hold no long process
/// name), the other text (left-aligned) columns give way next, left to right, each down to
/// [`MIN_TEXT`]: a cut text keeps its start, whereas a right-aligned number or header cut by
/// the table would lose its leading characters (`FAIL/S` shown as `AIL/S`, a limit of 1024 as
/// `024`, a backlog of 19994 as `94`). When that is not enough either, whole columns are
/// left out, in the order `drop` gives: a number is shown whole or not at all. A `flex`
/// column that `drop` does not name is essential: it keeps at least [`MIN_TEXT`] cells.
pub(super) fn fitted(
    headers: &[(&str, Align)],
    rows: &[Vec<String>],
    flex: usize,
    width: u16,
    spacing: u16,
    drop: &[usize],
) -> Fit {
    let mut natural: Vec<usize> = headers
        .iter()
        .map(|(h, _)| h.chars().count().min(40))
        .collect();
    for row in rows {
        for (w, cell) in natural.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count().min(40));
        }
    }
    let flex_floor = if drop.contains(&flex) {
        0
    } else {
        natural.get(flex).copied().unwrap_or(0).min(MIN_TEXT)
    };
    let mut shown: Vec<usize> = (0..headers.len()).collect();
    let mut dropping = drop.iter();
    loop {
        let mut widths = natural.clone();
        let gaps = usize::from(spacing).saturating_mul(shown.len().saturating_sub(1));
        let room = usize::from(width).saturating_sub(gaps);
        let fixed: usize = shown
            .iter()
            .map(|&i| if i == flex { flex_floor } else { widths[i] })
            .sum();
        let mut over = fixed.saturating_sub(room);
        for &i in &shown {
            if over == 0 {
                break;
            }
            if i != flex && matches!(headers[i].1, Align::Left) {
                let give = widths[i].saturating_sub(MIN_TEXT).min(over);
                widths[i] -= give;
                over -= give;
            }
        }
        if over > 0
            && let Some(&next) = dropping.next()
        {
            shown.retain(|&i| i != next);
            continue;
        }
        let widths = shown
            .iter()
            .map(|&i| {
                if i == flex {
                    Constraint::Fill(1)
                } else {
                    Constraint::Length(u16::try_from(widths[i]).unwrap_or(40))
                }
            })
            .collect();
        return Fit { shown, widths };
    }
}

pub(super) fn header<'a>(headers: &[(&'a str, Align)]) -> Row<'a> {
    Row::new(aligned(
        headers.iter().map(|(h, _)| (*h).to_owned()).collect(),
        headers,
    ))
    .bold()
}

pub(super) fn aligned(cells: Vec<String>, headers: &[(&str, Align)]) -> Vec<Cell<'static>> {
    cells
        .into_iter()
        .zip(headers)
        .map(|(text, (_, align))| {
            let line = Line::from(text);
            Cell::from(match align {
                Align::Left => line,
                Align::Right => line.alignment(Alignment::Right),
            })
        })
        .collect()
}
