//! The Prometheus text exposition format (0.0.4), written by the host and the collector alike so
//! every component's `/metrics` reads the same.

use std::fmt::Write;

/// Accumulates metric families into one exposition text.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Escapes a label value (`\`, `"` and newlines).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// One family: `kind` is `counter` or `gauge`; each row is (`{labels}` or "", value).
    pub fn family(&mut self, name: &str, help: &str, kind: &str, rows: &[(&str, u64)]) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(self.out, "{name}{labels} {v}");
        }
        self
    }

    /// A single unlabelled counter.
    pub fn counter(&mut self, name: &str, help: &str, v: u64) -> &mut Self {
        self.family(name, help, "counter", &[("", v)])
    }

    /// A single unlabelled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, v: u64) -> &mut Self {
        self.family(name, help, "gauge", &[("", v)])
    }

    /// A family with one label whose values are given with their counts.
    pub fn labelled(&mut self, name: &str, help: &str, kind: &str, label: &str, rows: &[(&str, u64)]) -> &mut Self {
        let rows: Vec<(String, u64)> = rows.iter().map(|(l, v)| (format!("{{{label}=\"{}\"}}", escape(l)), *v)).collect();
        let rows: Vec<(&str, u64)> = rows.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        self.family(name, help, kind, &rows)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families() {
        let mut e = Exposition::new();
        e.counter("a_total", "A.", 3).labelled("b_total", "B.", "counter", "reason", &[("x\"y", 1)]);
        assert_eq!(
            e.finish(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n# HELP b_total B.\n# TYPE b_total counter\nb_total{reason=\"x\\\"y\"} 1\n"
        );
    }
}
