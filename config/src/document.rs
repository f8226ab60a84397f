//! KDL text to a document, or to errors an operator can act on. KDL v2 is tried first, then v1.
//! The most common paste error, a JSON-style list (`events ["a" "b"]`, as the product page shows
//! it), gets its own message with the corrected line, since KDL has no arrays.

use crate::error::{ConfigError, ConfigErrors};
use kdl::KdlDocument;

/// A parsed document and the text its spans point into.
pub struct Document<'t> {
    pub text: &'t str,
    pub kdl: KdlDocument,
}

pub fn parse<'t>(name: &str, text: &'t str) -> Result<Document<'t>, ConfigErrors> {
    match KdlDocument::parse(text) {
        Ok(kdl) => Ok(Document { text, kdl }),
        Err(e) => {
            let mut errors = bracket_lists(text);
            if errors.is_empty() {
                errors = e
                    .diagnostics
                    .iter()
                    .map(|d| {
                        let what = d.message.clone().unwrap_or_else(|| "invalid KDL".into());
                        let err = ConfigError::at(text, d.span.offset(), format!("invalid KDL: {what}"));
                        match &d.help {
                            Some(h) => err.help(h.clone()),
                            None => err,
                        }
                    })
                    .collect();
            }
            if errors.is_empty() {
                errors.push(ConfigError::unplaced("invalid KDL"));
            }
            Err(ConfigErrors { file: String::new(), errors }.named(name))
        }
    }
}

/// `[` … `]` outside strings and comments: KDL has no list syntax. Each gets an error at the `[`
/// whose help is the line rewritten with the values side by side.
fn bracket_lists(text: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let code = code_mask(line);
        if let (Some(open), Some(close)) = (code.find('['), code.rfind(']')) {
            if open < close {
                let values = split_values(&line[open + 1..close]);
                let fixed = format!("{} {} {}", line[..open].trim(), values.join(" "), code[close + 1..].trim());
                errors.push(
                    ConfigError::at(text, line_start + open, "KDL has no lists: `[` cannot start a value")
                        .help(format!("give the values one after another: `{}`", fixed.trim())),
                );
            }
        }
        line_start += line.len();
    }
    errors
}

/// The line with string contents and any trailing `//` comment turned into spaces, byte for
/// byte, so positions found in it are positions in the line.
fn code_mask(line: &str) -> String {
    let mut out = Vec::with_capacity(line.len());
    let (mut in_str, mut escaped, mut comment) = (false, false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if comment {
            out.push(b' ');
        } else if in_str {
            if b == b'"' && !escaped {
                in_str = false;
                out.push(b'"');
            } else {
                out.push(b' ');
            }
            escaped = b == b'\\' && !escaped;
        } else if b == b'"' {
            in_str = true;
            out.push(b'"');
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            comment = true;
            out.push(b' ');
        } else {
            out.push(if b.is_ascii() { b } else { b' ' });
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Values of a JSON-style list body: `"a", "b" 3` → `["\"a\"", "\"b\"", "3"]`.
fn split_values(inner: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut cur = String::new();
    let mut in_str = false;
    let mut escaped = false;
    for c in inner.chars() {
        if in_str {
            cur.push(c);
            if c == '"' && !escaped {
                in_str = false;
            }
            escaped = c == '\\' && !escaped;
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                cur.push(c);
            }
            ',' | ' ' | '\t' => {
                if !cur.is_empty() {
                    values.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        values.push(cur);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_list_is_named_with_the_corrected_line() {
        let text = "agent \"t\" {\n    events [\"request_headers\", \"response_headers\"]  // both\n}\n";
        let Err(e) = parse("a.kdl", text) else { panic!("parsed") };
        assert_eq!(e.errors.len(), 1);
        assert_eq!((e.errors[0].line, e.errors[0].column), (2, 12));
        assert_eq!(e.errors[0].help.as_deref(), Some("give the values one after another: `events \"request_headers\" \"response_headers\"`"));
    }

    #[test]
    fn brackets_inside_strings_and_comments_are_not_lists() {
        assert!(bracket_lists("path \"/a[1]\" // [x]\n").is_empty());
    }

    #[test]
    fn other_syntax_errors_keep_the_parser_message_and_position() {
        let Err(e) = parse("a.kdl", "a 1\nb \"open\n") else { panic!("parsed") };
        assert_eq!(e.errors[0].line, 2);
        assert!(e.errors[0].message.starts_with("invalid KDL: "), "{}", e.errors[0].message);
    }

    #[test]
    fn v1_and_v2_booleans_both_parse() {
        assert!(parse("a.kdl", "a #true\n").is_ok());
        assert!(parse("a.kdl", "a true\n").is_ok());
    }
}
