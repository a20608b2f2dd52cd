//! Listings as `table`, `json` or `csv`. Rows are serde structs; JSON keeps their types, table
//! and CSV flatten lists into comma-separated cells. A table fits [`TABLE_WIDTH`] columns
//! (long cells shortened in the middle) unless `--wide` ([`set_wide`]).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// The width a table is made to fit, a wide terminal's.
pub const TABLE_WIDTH: usize = 120;
/// No column is shortened below this (a timestamp stays whole)...
const MIN_COLUMN: usize = 20;
/// ...but a column of hashes is, to this: its first and last hex digits tell it apart.
const MIN_HASH_COLUMN: usize = 13;

static WIDE: AtomicBool = AtomicBool::new(false);

/// `--wide`: tables show every cell whole, however wide they get.
pub fn set_wide(wide: bool) {
    WIDE.store(wide, Ordering::Relaxed);
}

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Writes `rows` in `format`. `table_columns` picks the columns a terminal table shows; JSON and
/// CSV carry every field.
pub fn render<T: Serialize>(
    rows: &[T],
    format: Format,
    table_columns: &[&str],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let values: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::to_value(r).expect("rows serialize"))
        .collect();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &values)?;
            writeln!(out)
        }
        Format::Csv => {
            let columns = columns_of(&values, &[]);
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(&columns)?;
            for value in &values {
                writer.write_record(columns.iter().map(|c| cell(&value[c.as_str()])))?;
            }
            writer.flush()
        }
        Format::Table => {
            let columns = columns_of(&values, table_columns);
            let cells: Vec<Vec<String>> = values
                .iter()
                .map(|v| {
                    columns
                        .iter()
                        .map(|c| escape_controls(&cell(&v[c.as_str()])))
                        .collect()
                })
                .collect();
            let mut widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells
                        .iter()
                        .map(|row| row[i].chars().count())
                        .chain([c.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            if !WIDE.load(Ordering::Relaxed) {
                let minimums: Vec<usize> = (0..columns.len())
                    .map(|i| {
                        let hashes = cells.iter().all(|row| {
                            row[i].is_empty()
                                || (row[i].len() >= 32
                                    && row[i].bytes().all(|b| b.is_ascii_hexdigit()))
                        });
                        // A column name stays whole: a table too wide is better than one
                        // whose columns cannot be told apart.
                        if hashes {
                            MIN_HASH_COLUMN
                        } else {
                            MIN_COLUMN.max(columns[i].len())
                        }
                    })
                    .collect();
                fit(&mut widths, &minimums, TABLE_WIDTH);
            }
            let line = |fields: &[String]| {
                let padded: Vec<String> = fields
                    .iter()
                    .zip(&widths)
                    .map(|(f, w)| format!("{:<w$}", shorten(f, *w), w = *w))
                    .collect();
                padded.join("  ").trim_end().to_owned()
            };
            writeln!(
                out,
                "{}",
                line(&columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>())
            )?;
            for row in &cells {
                writeln!(out, "{}", line(row))?;
            }
            Ok(())
        }
    }
}

/// Narrows columns one character at a time until the row fits `width` (two spaces between
/// columns): hash columns first, down to their minimum (a hash's ends tell it apart as well as
/// the whole), then the widest column that may still narrow, each down to its minimum.
fn fit(widths: &mut [usize], minimums: &[usize], width: usize) {
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    for hashes_only in [true, false] {
        while total(widths) > width {
            let Some(widest) = (0..widths.len())
                .filter(|i| widths[*i] > minimums[*i])
                .filter(|i| !hashes_only || minimums[*i] == MIN_HASH_COLUMN)
                .max_by_key(|i| widths[*i])
            else {
                break;
            };
            widths[widest] -= 1;
        }
    }
}

/// `text` in at most `width` characters: whole if it fits, else its start and end around an
/// ellipsis (a hash or a path is told apart by both ends).
fn shorten(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width || width < 3 {
        return text.to_owned();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

/// Writes one record (`hosts show`): JSON as an object, CSV as a header and one line, a table
/// as one `FIELD  value` line per field.
pub fn render_record<T: Serialize>(
    record: &T,
    format: Format,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let value = serde_json::to_value(record).expect("records serialize");
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &value)?;
            writeln!(out)
        }
        Format::Csv => render(std::slice::from_ref(&value), Format::Csv, &[], out),
        Format::Table => {
            let Value::Object(map) = &value else {
                return writeln!(out, "{}", cell(&value));
            };
            let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
            for (key, field) in map {
                let line = format!(
                    "{:<width$}  {}",
                    key.to_uppercase(),
                    escape_controls(&cell(field))
                );
                writeln!(out, "{}", line.trim_end())?;
            }
            Ok(())
        }
    }
}

/// `text` safe to put on a terminal: control characters (a newline that would forge a row,
/// an escape sequence that would clear the screen) and the Unicode marks that reorder text
/// shown as escapes (`\n`, `\x1b`, `\u{202e}`). Agents report file names, and a file name
/// can hold anything; JSON and CSV keep the exact value.
pub fn escape_controls(text: &str) -> String {
    let reorders = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(|c| c.is_control() || reorders(c)) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || reorders(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The columns to show: `wanted` if given, else every field of the first row. Column names are
/// known even for an empty listing only when `wanted` is given.
fn columns_of(values: &[Value], wanted: &[&str]) -> Vec<String> {
    if !wanted.is_empty() {
        return wanted.iter().map(|c| (*c).to_owned()).collect();
    }
    match values.first() {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        id: u32,
        name: &'static str,
        ips: Vec<&'static str>,
        note: Option<&'static str>,
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                id: 1,
                name: "web-01",
                ips: vec!["10.0.0.1", "fe80::1"],
                note: None,
            },
            Row {
                id: 22,
                name: "db",
                ips: vec![],
                note: Some("a, \"b\""),
            },
        ]
    }

    fn rendered(format: Format, columns: &[&str]) -> String {
        let mut out = Vec::new();
        render(&rows(), format, columns, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_aligns_chosen_columns() {
        assert_eq!(
            rendered(Format::Table, &["id", "name"]),
            "ID  NAME\n1   web-01\n22  db\n"
        );
    }

    #[test]
    fn csv_quotes_and_flattens() {
        assert_eq!(
            rendered(Format::Csv, &["id"]),
            "id,name,ips,note\n1,web-01,\"10.0.0.1, fe80::1\",\n22,db,,\"a, \"\"b\"\"\"\n"
        );
    }

    #[test]
    fn a_record_is_an_object_or_field_lines() {
        let record = &rows()[0];
        let mut out = Vec::new();
        render_record(record, Format::Table, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    1\nNAME  web-01\nIPS   10.0.0.1, fe80::1\nNOTE\n"
        );
        let mut out = Vec::new();
        render_record(record, Format::Json, &mut out).unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["name"], "web-01");
        let mut out = Vec::new();
        render_record(record, Format::Csv, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id,name,ips,note\n1,web-01,\"10.0.0.1, fe80::1\",\n"
        );
    }

    #[test]
    fn a_table_fits_the_terminal_unless_wide() {
        #[derive(Serialize)]
        struct Finding {
            path: String,
            sha256: String,
        }
        let row = Finding {
            path: format!("/srv/www/{}/shell.php", "deep/".repeat(20)),
            sha256: "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f".into(),
        };
        let mut out = Vec::new();
        render(std::slice::from_ref(&row), Format::Table, &[], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= TABLE_WIDTH, "{line}");
        }
        // Both ends stay: the file name and the hash's first and last digits.
        assert!(
            text.contains("shell.php") && text.contains("/srv/www/"),
            "{text}"
        );
        assert!(text.contains("275a02…51fd0f"), "{text}");
        assert!(text.contains('…'));
        assert_eq!(shorten("abcdefghij", 5), "ab…ij");
        assert_eq!(shorten("abc", 5), "abc");
    }

    #[test]
    fn hostile_text_cannot_forge_rows_or_reach_the_terminal() {
        #[derive(Serialize)]
        struct Finding {
            id: u32,
            path: &'static str,
        }
        let rows = [Finding {
            id: 1,
            path: "invoice.pdf\n7  web-01  resolved\u{1b}[2J\u{202e}fdp.exe",
        }];
        let mut out = Vec::new();
        render(&rows, Format::Table, &[], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        assert!(
            text.contains(r"invoice.pdf\n7  web-01  resolved\x1b[2J\u{202e}fdp.exe"),
            "{text}"
        );
        let mut out = Vec::new();
        render_record(&rows[0], Format::Table, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        // CSV quotes the exact value; JSON keeps it.
        let mut out = Vec::new();
        render(&rows, Format::Csv, &[], &mut out).unwrap();
        let mut reader = csv::Reader::from_reader(out.as_slice());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[1], rows[0].path);
        let mut out = Vec::new();
        render(&rows, Format::Json, &[], &mut out).unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value[0]["path"], rows[0].path);
        assert_eq!(escape_controls(r"C:\Users\bob"), r"C:\Users\bob");
    }

    #[test]
    fn json_keeps_types() {
        let value: Value = serde_json::from_str(&rendered(Format::Json, &["id"])).unwrap();
        assert_eq!(value[0]["id"], 1);
        assert_eq!(value[0]["ips"][1], "fe80::1");
        assert_eq!(value[1]["note"], "a, \"b\"");
        assert!(value[0]["note"].is_null());
    }
}
