//! Dependency order: a topological sort that names the cycle when there is one.

use std::collections::HashMap;

use super::error::HostError;

/// Indices of `deps` (service i depends on `deps[i]`) in start order, ties kept in the order
/// the services were added.
pub(crate) fn start_order(names: &[String], deps: &[Vec<String>]) -> Result<Vec<usize>, HostError> {
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut edges = Vec::with_capacity(names.len());
    for (i, list) in deps.iter().enumerate() {
        let mut out = Vec::with_capacity(list.len());
        for dep in list {
            match index.get(dep.as_str()) {
                Some(&j) => out.push(j),
                None => {
                    return Err(HostError::UnknownDependency {
                        service: names[i].clone(),
                        dependency: dep.clone(),
                    });
                }
            }
        }
        edges.push(out);
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    let mut marks = vec![Mark::New; names.len()];
    let mut order = Vec::with_capacity(names.len());
    let mut path = Vec::new();
    fn visit(
        i: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
        names: &[String],
    ) -> Result<(), HostError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Visiting => {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[from..].iter().map(|&p| names[p].clone()).collect();
                cycle.push(names[i].clone());
                return Err(HostError::Cycle(cycle));
            }
            Mark::New => {}
        }
        marks[i] = Mark::Visiting;
        path.push(i);
        for &j in &edges[i] {
            visit(j, edges, marks, order, path, names)?;
        }
        path.pop();
        marks[i] = Mark::Done;
        order.push(i);
        Ok(())
    }
    for i in 0..names.len() {
        visit(i, &edges, &mut marks, &mut order, &mut path, names)?;
    }
    Ok(order)
}
