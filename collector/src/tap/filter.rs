//! The tap's filter expressions: conditions on event fields joined by `and`, such as
//! `http.response.status_code >= 500 and http.request.method == "POST"`. A field is named by its
//! dotted path in the event; a missing field matches nothing (and everything for `!=`).

use serde_json::Value;

/// A parsed expression; the empty expression matches every event.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    path: Vec<String>,
    op: Op,
    value: Literal,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Number(f64),
    Text(String),
}

/// Why an expression could not be read: the message names the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter expression: {0}")]
pub struct FilterError(pub String);

const OPS: [(&str, Op); 7] =
    [("==", Op::Eq), ("!=", Op::Ne), (">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt), ("contains", Op::Contains)];

/// Splits into words, keeping double-quoted strings (with `\"` escapes) whole.
fn tokens(s: &str) -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut t = String::from("\"");
            loop {
                match chars.next() {
                    Some('\\') => t.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => t.push(c),
                    None => return Err(FilterError(format!("unterminated string {t}"))),
                }
            }
            out.push(t + "\"");
        } else if "=!<>~".contains(c) {
            let mut t = String::new();
            while let Some(&c) = chars.peek().filter(|c| "=!<>~".contains(**c)) {
                t.push(c);
                chars.next();
            }
            out.push(t);
        } else {
            let mut t = String::new();
            while let Some(&c) = chars.peek().filter(|c| !c.is_whitespace() && !"=!<>~\"".contains(**c)) {
                t.push(c);
                chars.next();
            }
            out.push(t);
        }
    }
    Ok(out)
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        let toks = tokens(s)?;
        let mut conditions = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let [path, op, value] = [toks.get(i), toks.get(i + 1), toks.get(i + 2)];
            let (Some(path), Some(op), Some(value)) = (path, op, value) else {
                return Err(FilterError(format!("incomplete condition after {:?}: expected `field op value`", toks[i..].join(" "))));
            };
            let op = OPS.iter().find(|(t, _)| t == op).map(|(_, o)| *o).ok_or_else(|| {
                FilterError(format!("unknown operator {op:?}: use one of == != >= <= > < contains"))
            })?;
            let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(text) => Literal::Text(text.to_string()),
                None => value.parse().map(Literal::Number).unwrap_or_else(|_| Literal::Text(value.clone())),
            };
            conditions.push(Condition { path: path.split('.').map(str::to_string).collect(), op, value });
            i += 3;
            match toks.get(i).map(String::as_str) {
                None => {}
                Some("and") if i + 1 < toks.len() => i += 1,
                Some(other) => return Err(FilterError(format!("expected `and` between conditions, got {other:?}"))),
            }
        }
        Ok(Filter { conditions })
    }

    /// True when the expression has no condition (it matches every event).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    pub fn matches(&self, event: &Value) -> bool {
        self.conditions.iter().all(|c| c.matches(event))
    }
}

impl Condition {
    fn matches(&self, event: &Value) -> bool {
        let field = self.path.iter().try_fold(event, |v, k| v.get(k));
        let Some(field) = field else { return self.op == Op::Ne };
        match (&self.value, self.op) {
            (Literal::Text(t), Op::Contains) => field.as_str().is_some_and(|s| s.contains(t.as_str())),
            (_, Op::Contains) => false,
            (Literal::Number(n), op) => field.as_f64().is_some_and(|f| compare(f.partial_cmp(n), op)),
            (Literal::Text(t), op) => match field {
                Value::String(s) => compare(Some(s.as_str().cmp(t.as_str())), op),
                Value::Bool(b) => compare(Some(b.to_string().as_str().cmp(t.as_str())), op),
                _ => op == Op::Ne,
            },
        }
    }
}

fn compare(ord: Option<std::cmp::Ordering>, op: Op) -> bool {
    use std::cmp::Ordering::*;
    matches!(
        (ord, op),
        (Some(Equal), Op::Eq | Op::Ge | Op::Le) | (Some(Less), Op::Lt | Op::Le | Op::Ne) | (Some(Greater), Op::Gt | Op::Ge | Op::Ne)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(status: u64, method: &str) -> Value {
        json!({"http": {"request": {"method": method}, "response": {"status_code": status}}, "url": {"path": "/api/users/7"}})
    }

    #[test]
    fn numbers_strings_and_and() {
        let f = Filter::parse("http.response.status_code >= 500 and http.request.method == \"POST\"").unwrap();
        assert!(f.matches(&ev(503, "POST")));
        assert!(!f.matches(&ev(503, "GET")));
        assert!(!f.matches(&ev(404, "POST")));
        let f = Filter::parse("url.path contains users and http.response.status_code!=200").unwrap();
        assert!(f.matches(&ev(404, "GET")) && !f.matches(&ev(200, "GET")));
        assert!(Filter::parse("").unwrap().matches(&ev(200, "GET")));
    }

    #[test]
    fn missing_fields_match_only_not_equal() {
        assert!(!Filter::parse("geo.country == FR").unwrap().matches(&ev(200, "GET")));
        assert!(Filter::parse("geo.country != FR").unwrap().matches(&ev(200, "GET")));
    }

    #[test]
    fn bad_expressions_are_named() {
        assert_eq!(Filter::parse("a =~ 1").unwrap_err().0, "unknown operator \"=~\": use one of == != >= <= > < contains");
        assert!(Filter::parse("a == 1 or b == 2").unwrap_err().0.contains("expected `and`"));
        assert!(Filter::parse("a ==").unwrap_err().0.contains("incomplete condition"));
        assert!(Filter::parse("a == \"open").unwrap_err().0.contains("unterminated"));
    }
}
