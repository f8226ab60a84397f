//! Precision and recall of every content detector on the labelled corpus in
//! `tests/data/redaction-corpus.tsv` (positives of each kind in context, near misses, and
//! ordinary traffic: user agents, timestamps, UUIDs, order numbers, version strings). Both must
//! be at least 0.99 for every detector. Run with `--nocapture` for the table in the README.

use sentinel_collector::redact::detect::{find, Kind};

#[test]
fn every_detector_has_precision_and_recall_of_at_least_0_99() {
    let corpus = include_str!("data/redaction-corpus.tsv");
    let rows: Vec<(&str, bool, &str)> = corpus
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let (d, label, text) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
            (d, label == "1", text)
        })
        .collect();
    assert!(rows.len() > 600, "the corpus lost rows: {}", rows.len());
    let mut spans = Vec::new();
    let found: Vec<Vec<Kind>> = rows
        .iter()
        .map(|(_, _, text)| {
            find(text, &Kind::ALL, &mut spans);
            spans.iter().map(|s| s.kind).collect()
        })
        .collect();
    println!("| detector | positives | negatives | precision | recall |\n| --- | --- | --- | --- | --- |");
    let mut failures = Vec::new();
    for kind in Kind::ALL {
        let name = kind.name();
        let (mut tp, mut fp, mut fneg, mut pos, mut neg) = (0, 0, 0, 0, 0);
        for ((d, label, text), kinds) in rows.iter().zip(&found) {
            let positive = *d == name && *label;
            let hit = kinds.contains(&kind);
            if *d == name {
                if *label { pos += 1 } else { neg += 1 }
            }
            match (positive, hit) {
                (true, true) => tp += 1,
                (true, false) => {
                    fneg += 1;
                    failures.push(format!("{name} missed: {text}"));
                }
                (false, true) => {
                    fp += 1;
                    failures.push(format!("{name} false positive: {text}"));
                }
                _ => {}
            }
        }
        let precision = if tp + fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
        let recall = if tp + fneg == 0 { 1.0 } else { tp as f64 / (tp + fneg) as f64 };
        println!("| {name} | {pos} | {neg} | {precision:.3} | {recall:.3} |");
        assert!(pos >= 25 && neg >= 5, "{name}: too few labelled rows ({pos} positive, {neg} negative)");
        if precision < 0.99 || recall < 0.99 {
            failures.push(format!("{name}: precision {precision:.3}, recall {recall:.3}"));
        }
    }
    assert!(failures.iter().all(|f| !f.contains("precision")), "{}", failures.join("\n"));
}
