//! How the CLI prints: aligned tables or key/value blocks for people, JSON
//! for scripts (`--output json`).
//!
//! Everything goes through [`emit`] so a closed pipe (`bulwark device ls |
//! head -1`) is an ordinary error the caller can recognise, not a panic.

use std::fmt::Display;
use std::io::Write as _;

use serde::Serialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// What listing and show commands print.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Aligned columns with a header for listings, key-value lines for one record.
    #[default]
    Table,
    /// JSON: an array of records for listings, one object for a record.
    Json,
}

/// Writes `text` to stdout, adding a final newline when it lacks one.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Pretty JSON of `value` on stdout.
pub fn emit_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    emit(&text)?;
    Ok(())
}

/// Rows under a header, columns padded to the widest cell.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print as empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Two spaces between columns, no trailing spaces, one line per row.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                line.push_str(cell);
                if i + 1 < n {
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&format!(
            "{:<width$}  {v}\n",
            format!("{k}:"),
            width = width + 1
        ));
    }
    out
}

const TS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// A timestamp as UTC to the second: `2025-01-31T12:00:00Z`.
pub fn ts(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(TS)
        .unwrap_or_else(|_| t.to_string())
}

/// An optional timestamp, `-` when absent.
pub fn opt_ts(t: Option<OffsetDateTime>) -> String {
    t.map(ts).unwrap_or_else(|| "-".to_owned())
}

/// An optional value, `-` when absent or empty.
pub fn opt<T: Display>(v: Option<T>) -> String {
    match v.map(|v| v.to_string()) {
        Some(s) if !s.is_empty() => s,
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn table_aligns_and_trims() {
        let mut t = Table::new(&["ID", "STATE", "GROUP"]);
        t.row(vec!["sensor-01".into(), "active".into(), "floor-3".into()]);
        t.row(vec!["gw".into(), "quarantined".into(), String::new()]);
        t.row(vec!["short".into()]);
        assert_eq!(
            t.render(),
            "ID         STATE        GROUP\n\
             sensor-01  active       floor-3\n\
             gw         quarantined\n\
             short\n"
        );
    }

    #[test]
    fn empty_table_is_just_the_header() {
        assert_eq!(Table::new(&["NAME", "DEVICES"]).render(), "NAME  DEVICES\n");
    }

    #[test]
    fn key_values_align() {
        assert_eq!(
            key_values(&[("id", "a".into()), ("last seen", "-".into())]),
            "id:         a\nlast seen:  -\n"
        );
    }

    #[test]
    fn timestamps_are_utc_seconds() {
        assert_eq!(
            ts(datetime!(2025-01-31 13:00:00.123456 +01:00)),
            "2025-01-31T12:00:00Z"
        );
        assert_eq!(opt_ts(None), "-");
        assert_eq!(opt::<String>(Some(String::new())), "-");
        assert_eq!(opt(Some(3)), "3");
    }
}
