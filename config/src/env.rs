//! `${NAME}` in a string value is replaced by the environment variable NAME when the config is
//! read (`$${` writes a literal `${`). Values that hold secrets are kept as [`Secret`], which
//! never prints its content, so a logged or debug-printed config does not leak them.

use std::fmt;

/// A value that must not appear in logs: printing it shows `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a client's credentials).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a value could not be expanded.
#[derive(Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// `${NAME}` where NAME is not set.
    Unset(String),
    /// `${` without a closing `}` or with a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    Malformed,
}

/// Replaces every `${NAME}` in `s` using `env`.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(lit) = after.strip_prefix("${") {
            out.push_str("${");
            rest = lit;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(ExpandError::Malformed)?;
            let name = &body[..end];
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ExpandError::Malformed);
            }
            out.push_str(&env(name).ok_or_else(|| ExpandError::Unset(name.to_string()))?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "KAFKA_PASSWORD").then(|| "hunter2".to_string())
    }

    #[test]
    fn variables_are_replaced_and_escapes_kept() {
        assert_eq!(expand("p=${KAFKA_PASSWORD}!", &env), Ok("p=hunter2!".into()));
        assert_eq!(expand("cost $5 $${HOME}", &env), Ok("cost $5 ${HOME}".into()));
        assert_eq!(expand("${NOPE}", &env), Err(ExpandError::Unset("NOPE".into())));
        assert_eq!(expand("${BAD NAME}", &env), Err(ExpandError::Malformed));
        assert_eq!(expand("${OPEN", &env), Err(ExpandError::Malformed));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
