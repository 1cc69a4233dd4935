//! Results as JSON lines (one measurement of one server each), and the side-by-side table made
//! from them. Ratios are turn-server / coturn, so on a noisy machine the two servers' numbers
//! from the same run are compared rather than either against a number from another day.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
    /// Context, not a score (e.g. the generator's own baseline).
    Neither,
}

/// One measurement of one server. `value` is `None` when it could not be made; `note` says why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub server: String,
    /// Stable id that pairs the same measurement across servers, e.g. `sat_120_50`.
    pub key: String,
    pub row: String,
    pub value: Option<f64>,
    pub unit: String,
    pub better: Better,
    #[serde(default)]
    pub note: String,
}

/// Appends records to a JSON-lines file and echoes each to stderr as it is made.
pub struct Sink {
    server: String,
    file: std::fs::File,
}

impl Sink {
    pub fn open(path: &Path, server: &str) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Sink { server: server.to_owned(), file })
    }

    pub fn record(
        &mut self,
        key: &str,
        row: &str,
        value: Option<f64>,
        unit: &str,
        better: Better,
        note: impl Into<String>,
    ) -> anyhow::Result<()> {
        let r = Record {
            server: self.server.clone(),
            key: key.to_owned(),
            row: row.to_owned(),
            value,
            unit: unit.to_owned(),
            better,
            note: note.into(),
        };
        eprintln!("[{}] {}: {} {} {}", r.server, r.row, fmt_value(r.value), r.unit, r.note);
        let line = serde_json::to_string(&r).context("serialize record")?;
        writeln!(self.file, "{line}").context("write record")?;
        Ok(())
    }
}

pub fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The markdown table of every key, in the order keys first appear, with `servers` as columns
/// (each after the first also gives its ratio to the first), followed by the notes.
pub fn table(path: &Path, servers: &[String]) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut order: Vec<String> = Vec::new();
    let mut by_key: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r: Record = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        if !by_key.contains_key(&r.key) {
            order.push(r.key.clone());
        }
        by_key.entry(r.key.clone()).or_default().push(r);
    }
    let mut out = String::new();
    let mut head = String::from("| measurement | unit |");
    let mut rule = String::from("| --- | --- |");
    for s in servers {
        head.push_str(&format!(" {s} |"));
        rule.push_str(" ---: |");
    }
    for s in servers.iter().skip(1) {
        head.push_str(&format!(" ratio {s}/{} |", servers[0]));
        rule.push_str(" ---: |");
    }
    if servers.len() >= 2 {
        head.push_str(" better |");
        rule.push_str(" --- |");
    }
    out.push_str(&head);
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    let mut notes = Vec::new();
    for key in &order {
        let records = &by_key[key];
        let Some(first) = records.first() else { continue };
        // Repeated runs (BENCH_REPEAT) report the best of each server's runs: on a shared machine
        // disturbances only ever make a server look worse.
        let value_of = |s: &str| {
            let mut values = records.iter().filter(|r| r.server == s).filter_map(|r| r.value);
            match first.better {
                Better::Higher => values.reduce(f64::max),
                Better::Lower => values.reduce(f64::min),
                Better::Neither => values.next_back(),
            }
        };
        let mut line = format!("| {} | {} |", first.row, first.unit);
        for s in servers {
            line.push_str(&format!(" {} |", fmt_value(value_of(s))));
        }
        for s in servers.iter().skip(1) {
            let ratio = match (value_of(&servers[0]), value_of(s)) {
                (Some(a), Some(b)) if a != 0.0 => format!("{:.2}", b / a),
                _ => "n/a".to_owned(),
            };
            line.push_str(&format!(" {ratio} |"));
        }
        if servers.len() >= 2 {
            let better = match first.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
                Better::Neither => "-",
            };
            line.push_str(&format!(" {better} |"));
        }
        out.push_str(&line);
        out.push('\n');
        for r in records.iter().filter(|r| !r.note.is_empty()) {
            notes.push(format!("- {} ({}): {}", r.row, r.server, r.note));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    Ok(out)
}
