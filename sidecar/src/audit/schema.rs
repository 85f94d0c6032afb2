//! Validation of records against `docs/audit-events.schema.json` (feature `schema`; for tests).

use std::sync::OnceLock;

use serde_json::Value;

/// The committed JSON Schema (draft 2020-12) of every event type.
pub const SCHEMA_JSON: &str = include_str!("../../../docs/audit-events.schema.json");

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static V: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA_JSON)
            .map_err(|e| format!("docs/audit-events.schema.json is not JSON: {e}"))?;
        jsonschema::draft202012::new(&schema)
            .map_err(|e| format!("docs/audit-events.schema.json is not a valid schema: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// `Ok` when `record` (one log line as JSON) matches the schema; otherwise every violation, one
/// per line, each with its JSON pointer.
pub fn validate(record: &Value) -> Result<(), String> {
    let v = validator()?;
    let errors: Vec<String> = v
        .iter_errors(record)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{record}\n  {}", errors.join("\n  ")))
    }
}

/// Validates one log line.
pub fn validate_line(line: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}: {line}"))?;
    validate(&v)
}
