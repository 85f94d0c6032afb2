//! `~/.ironclaw/.env`: `NAME=value` lines for `${VAR}` references and env grants.
//!
//! Format: one `NAME=value` per line; blank lines and `#` comments ignored; an optional leading
//! `export `; values may be wrapped in single or double quotes. Values are never printed.

use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("{path}:{line}: expected NAME=value (NAME of A-Z, a-z, 0-9, '_')")]
    Syntax { path: String, line: usize },
    #[error(transparent)]
    Io(#[from] crate::fsutil::PathError),
}

/// Loads the file; a missing file is an empty map.
pub fn load(path: &Path) -> Result<BTreeMap<String, String>, EnvFileError> {
    let Some(text) = crate::fsutil::read_optional(path)? else {
        return Ok(BTreeMap::new());
    };
    parse(&text).map_err(|line| EnvFileError::Syntax {
        path: path.display().to_string(),
        line,
    })
}

/// Parses `.env` text; the error is the 1-based line number of the first bad line.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, usize> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) = line.split_once('=').ok_or(i + 1)?;
        let name = name.trim();
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(i + 1);
        }
        let v = value.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.insert(name.to_owned(), v.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_quotes_comments_and_export() {
        let m = super::parse("# c\nexport A=1\nB = \"two words\"\nC='x=y'\n\n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x=y");
        assert_eq!(super::parse("A=1\nnot a line\n"), Err(2));
        assert_eq!(super::parse("1A=1\n"), Err(1));
    }
}
