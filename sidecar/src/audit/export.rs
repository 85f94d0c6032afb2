//! `audit export`: JSON (one array) or CSV (header + RFC 4180 quoting).

use std::io::Write;

use super::{AuditError, Record};

/// Export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON array of records, each shaped like its log line.
    Json,
    /// Columns ts,event,eventId,sessionId,skill,context; context is the event's own fields as a
    /// JSON object.
    Csv,
}

/// The CSV header.
pub const CSV_HEADER: [&str; 6] = ["ts", "event", "eventId", "sessionId", "skill", "context"];

pub fn write(records: &[Record], format: Format, out: &mut dyn Write) -> Result<(), AuditError> {
    match format {
        Format::Json => write_json(records, out),
        Format::Csv => write_csv(records, out),
    }
}

fn write_json(records: &[Record], out: &mut dyn Write) -> Result<(), AuditError> {
    let io = AuditError::Output;
    out.write_all(b"[").map_err(io)?;
    for (i, r) in records.iter().enumerate() {
        out.write_all(if i == 0 { b"\n  " } else { b",\n  " })
            .map_err(io)?;
        serde_json::to_writer(&mut *out, r)
            .map_err(|e| AuditError::Output(std::io::Error::other(e)))?;
    }
    out.write_all(if records.is_empty() { b"]\n" } else { b"\n]\n" })
        .map_err(io)?;
    out.flush().map_err(io)
}

fn write_csv(records: &[Record], out: &mut dyn Write) -> Result<(), AuditError> {
    let csv_err = |e: csv::Error| AuditError::Output(std::io::Error::other(e));
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Necessary)
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    w.write_record(CSV_HEADER).map_err(csv_err)?;
    for r in records {
        let context = serde_json::Value::Object(r.fields.clone()).to_string();
        w.write_record([
            r.ts.as_str(),
            r.event.as_str(),
            r.event_id.as_str(),
            r.session_id.as_str(),
            r.skill.as_deref().unwrap_or(""),
            context.as_str(),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(AuditError::Output)
}
