//! The reference proxy's one access rule, so the `sentinel.*` fields carry decisions the proxy
//! really made: requests whose path starts with a denied prefix are answered 403 by the proxy
//! itself. Zentinel's agents and WAF rules play this part in a production proxy; here it is one
//! check, timed like an agent.

/// What the policy decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `allow` or `block`.
    pub decision: &'static str,
    /// The rule that matched (`deny-path:/admin`), if any.
    pub rule: Option<String>,
    /// 1 for a blocked request, 0 otherwise.
    pub risk_score: f32,
    /// Time the check took.
    pub duration_us: u32,
}

/// Denied path prefixes (`--deny-path`).
#[derive(Debug, Clone, Default)]
pub struct PathPolicy {
    deny: Vec<String>,
}

/// The name the policy reports itself under in `sentinel.agents`.
pub const AGENT_NAME: &str = "path-policy";

impl PathPolicy {
    pub fn new(deny: Vec<String>) -> Self {
        PathPolicy { deny: deny.into_iter().filter(|p| !p.is_empty()).collect() }
    }

    /// `None` when no rule is configured: such a proxy makes no decisions to report.
    pub fn check(&self, path: &str) -> Option<Verdict> {
        if self.deny.is_empty() {
            return None;
        }
        let started = std::time::Instant::now();
        let hit = self.deny.iter().find(|p| path.starts_with(p.as_str()));
        let duration_us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        Some(match hit {
            Some(p) => Verdict { decision: "block", rule: Some(format!("deny-path:{p}")), risk_score: 1.0, duration_us },
            None => Verdict { decision: "allow", rule: None, risk_score: 0.0, duration_us },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_prefixes_block_and_name_their_rule() {
        let p = PathPolicy::new(vec!["/admin".into(), "/internal/".into()]);
        let v = p.check("/admin/users").unwrap();
        assert_eq!((v.decision, v.rule.as_deref(), v.risk_score), ("block", Some("deny-path:/admin"), 1.0));
        let v = p.check("/api/internal").unwrap();
        assert_eq!((v.decision, v.rule, v.risk_score), ("allow", None, 0.0));
        assert_eq!(PathPolicy::default().check("/admin"), None);
    }
}
