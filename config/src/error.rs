//! Configuration errors as an operator reads them: `file:line:column: what is wrong`, then what
//! was expected and how to fix it when that is known. A file's errors are reported together.

use std::fmt;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line and column (in characters) of the offending text; 0 when not in the file.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// How to fix it, when known.
    pub help: Option<String>,
}

impl ConfigError {
    /// An error about the file as a whole (it cannot be read, say).
    pub fn unplaced(message: impl Into<String>) -> Self {
        ConfigError { line: 0, column: 0, message: message.into(), help: None }
    }

    /// An error at byte `offset` of `text`.
    pub fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(text, offset);
        ConfigError { line, column, message: message.into(), help: None }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// 1-based line and column of byte `offset` (clamped to the text; columns count characters).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Every error found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file the errors are about, as given to the parser.
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn single(e: ConfigError) -> Self {
        ConfigErrors { file: String::new(), errors: vec![e] }
    }

    pub(crate) fn named(mut self, file: &str) -> Self {
        self.file = file.to_string();
        self.errors.sort_by_key(|e| (e.line, e.column));
        self
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match (self.file.is_empty(), e.line) {
                (_, 0) if self.file.is_empty() => write!(f, "{}", e.message)?,
                (_, 0) => write!(f, "{}: {}", self.file, e.message)?,
                (true, _) => write!(f, "{}:{}: {}", e.line, e.column, e.message)?,
                (false, _) => write!(f, "{}:{}:{}: {}", self.file, e.line, e.column, e.message)?,
            }
            if let Some(h) = &e.help {
                write!(f, "\n  help: {h}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        let text = "a 1\n// é\nbb 2";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, text.find("bb").unwrap()), (3, 1));
        assert_eq!(line_column(text, text.find('é').unwrap() + 2), (2, 5));
        assert_eq!(line_column(text, 999), (3, 5));
    }

    #[test]
    fn errors_print_file_line_column_and_help() {
        let e = ConfigErrors {
            file: "agent.kdl".into(),
            errors: vec![ConfigError { line: 3, column: 5, message: "bad".into(), help: Some("fix it".into()) }],
        };
        assert_eq!(e.to_string(), "agent.kdl:3:5: bad\n  help: fix it");
    }
}
