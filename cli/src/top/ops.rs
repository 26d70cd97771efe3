//! `ephemeral ops NAME` and `ephemeral signals`: one poll, then a table or JSON lines.

use ephemeral::Pattern;
use ephemeral_bus::inspect::{OperationEntry, StateFrame};

use super::plain::{Align, SIGNAL_HEADERS, emit, signal_rows, table, unsampled_signals};
use super::{OpsArgs, SignalsArgs, collect, fmt};
use crate::commands::Target;
use crate::exit::{Failure, NO_MATCH};

/// The operations of one coordinator frame: its sample, plus recent failures the sample's
/// bound left out.
fn operations(frame: &StateFrame) -> Vec<&OperationEntry> {
    let Some(c) = frame.coordinator() else {
        return Vec::new();
    };
    let mut ops: Vec<&OperationEntry> = c.operations.iter().collect();
    for failure in &c.recent_failures {
        if !ops.iter().any(|o| o.id == failure.id) {
            ops.push(failure);
        }
    }
    ops
}

/// `ephemeral ops NAME`.
pub(crate) async fn ops(target: &Target, args: OpsArgs) -> Result<(), Failure> {
    let (source, frames) = collect(target, args.wait).await?;
    let name = Pattern::new(&args.name);
    let key = args.key.as_deref().map(Pattern::new);
    let chosen: Vec<&StateFrame> = frames
        .iter()
        .filter(|f| f.coordinator().is_some() && name.matches(&f.publisher.name))
        .collect();
    if chosen.is_empty() {
        let mut names: Vec<&str> = frames
            .iter()
            .filter(|f| f.coordinator().is_some())
            .map(|f| f.publisher.name.as_str())
            .collect();
        // Several processes may publish one name, not next to each other in the list.
        names.sort_unstable();
        names.dedup();
        let known = if names.is_empty() {
            "none publishes".to_owned()
        } else {
            format!("publishing: {}", names.join(", "))
        };
        return Err(Failure::new(
            NO_MATCH,
            format!(
                "no coordinator named `{}` publishes on {} ({known})",
                args.name,
                source.label()
            ),
        ));
    }
    let keep = |op: &OperationEntry| {
        (args.state.is_empty() || args.state.contains(&op.state))
            && key
                .as_ref()
                .is_none_or(|k| op.key.as_deref().is_some_and(|key| k.matches(key)))
    };
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    for frame in &chosen {
        for op in operations(frame).into_iter().filter(|op| keep(op)) {
            if args.json {
                lines.push(
                    serde_json::to_string(&OperationLine {
                        process: &frame.publisher.process,
                        coordinator: &frame.publisher.name,
                        operation: op,
                    })
                    .unwrap_or_default(),
                );
            } else {
                rows.push(vec![
                    fmt::process(&frame.publisher),
                    frame.publisher.name.clone(),
                    format!("op-{}", op.id),
                    op.state.clone(),
                    op.key
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), fmt::one_line),
                    fmt::millis(op.age_ms),
                    op.run_ms.map_or_else(|| "-".to_owned(), fmt::millis),
                    op.error.as_deref().map(fmt::one_line).unwrap_or_default(),
                ]);
            }
        }
    }
    if !args.json {
        lines = table(
            &[
                ("PROCESS", Align::Left),
                ("NAME", Align::Left),
                ("ID", Align::Left),
                ("STATE", Align::Left),
                ("KEY", Align::Left),
                ("AGE", Align::Right),
                ("RUN", Align::Right),
                ("ERROR", Align::Left),
            ],
            &rows,
        );
        let omitted: u64 = chosen
            .iter()
            .filter_map(|f| f.coordinator())
            .map(|c| c.operations_omitted)
            .sum();
        if omitted > 0 {
            lines.push(format!(
                "({omitted} more tracked operations not in the published sample)"
            ));
        }
    }
    emit(&lines);
    Ok(())
}

/// `ephemeral signals`.
pub(crate) async fn signals(target: &Target, args: SignalsArgs) -> Result<(), Failure> {
    let (_source, frames) = collect(target, args.wait).await?;
    let pattern = Pattern::new(&args.pattern);
    let keep = |s: &ephemeral_bus::inspect::SignalEntry| {
        pattern.matches(&s.name) && (!args.held || s.held)
    };
    if args.json {
        let lines: Vec<String> = frames
            .iter()
            .filter_map(|f| Some((f, f.sink()?)))
            .flat_map(|(f, sink)| {
                sink.signals.iter().filter(|s| keep(s)).map(move |s| {
                    serde_json::to_string(&SignalLine {
                        process: &f.publisher.process,
                        sink: &f.publisher.name,
                        signal: s,
                    })
                    .unwrap_or_default()
                })
            })
            .collect();
        emit(&lines);
    } else {
        let mut lines = table(&SIGNAL_HEADERS, &signal_rows(&frames, keep));
        let unsampled = unsampled_signals(&frames);
        if unsampled > 0 {
            lines.push(format!(
                "({unsampled} more live signals not in the published sample)"
            ));
        }
        emit(&lines);
    }
    Ok(())
}

/// One `ops --json` line: the publishing process, the coordinator's name, and the operation
/// as published.
#[derive(serde::Serialize)]
struct OperationLine<'a> {
    process: &'a ephemeral_bus::inspect::ProcessInfo,
    coordinator: &'a str,
    operation: &'a OperationEntry,
}

/// One `signals --json` line: the publishing process, the sink's name, and the signal as
/// published.
#[derive(serde::Serialize)]
struct SignalLine<'a> {
    process: &'a ephemeral_bus::inspect::ProcessInfo,
    sink: &'a str,
    signal: &'a ephemeral_bus::inspect::SignalEntry,
}
