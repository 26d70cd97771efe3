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
/// The narrowest a text column is cut to when the columns do not fit.
const MIN_TEXT: usize = 4;

/// The widths of a table `width` cells wide inside its borders, `spacing` cells between
/// columns: each column as wide as its widest cell (header included), at most 40, but column
/// `flex`, which takes what is left (and gives way first when the terminal is narrow). When
/// the others do not fit even so (80 columns hold no long process name), the other text
/// (left-aligned) columns give way next, left to right, each down to [`MIN_TEXT`]: a cut
/// text keeps its start, whereas a right-aligned number or header cut by the table would
/// lose its leading characters (`FAIL/S` shown as `AIL/S`, a limit of 1024 as `024`).
pub(super) fn fitted(
    headers: &[(&str, Align)],
    rows: &[Vec<String>],
    flex: usize,
    width: u16,
    spacing: u16,
) -> Vec<Constraint> {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|(h, _)| h.chars().count().min(40))
        .collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count().min(40));
        }
    }
    let gaps = usize::from(spacing).saturating_mul(widths.len().saturating_sub(1));
    let room = usize::from(width).saturating_sub(gaps);
    let fixed: usize = widths
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != flex)
        .map(|(_, w)| w)
        .sum();
    let mut over = fixed.saturating_sub(room);
    for (i, (_, align)) in headers.iter().enumerate() {
        if over == 0 {
            break;
        }
        if i != flex && matches!(align, Align::Left) {
            let give = widths[i].saturating_sub(MIN_TEXT).min(over);
            widths[i] -= give;
            over -= give;
        }
    }
    widths
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            if i == flex {
                Constraint::Fill(1)
            } else {
                Constraint::Length(u16::try_from(w).unwrap_or(40))
            }
        })
        .collect()
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
