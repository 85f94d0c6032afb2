//! Timestamps: RFC 3339, UTC, milliseconds, `Z` (`2026-04-06T11:23:01.447Z`).

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

const TS: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Rotated-file suffix: `20260406T112301.447123Z` (microseconds keep names unique and sortable).
const ROTATED: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:6]Z");

/// `ts` of a record.
pub fn format_ts(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    // The format only has numeric components, so formatting cannot fail; fall back to RFC 3339.
    t.format(TS)
        .or_else(|_| t.format(&Rfc3339))
        .unwrap_or_default()
}

/// Parses any RFC 3339 timestamp (records and `--since`/`--until`).
pub(crate) fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

pub(crate) fn format_rotated(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    t.format(ROTATED).unwrap_or_default()
}

pub(crate) fn parse_rotated(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, ROTATED)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

pub fn unix_ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
