//! Precision and recall of the redaction on two labelled corpora. `tests/data/redaction-corpus.tsv`:
//! each content detector on texts with data of its kind in context, near misses, and ordinary
//! traffic. `tests/data/pii-values.tsv`, through the whole redaction stage: every value in every
//! form a client sends it (a header as written, a query value percent-encoded, form-encoded and
//! double-encoded, a path segment, a URL in `Referer`), scored by what the event holds after.
//! Both must reach 0.99 for every kind (and form). Run with `--nocapture` for the tables in
//! docs/redaction.md.

use sentinel_collector::redact::detect::{find, Kind};
use sentinel_collector::redact::{Redactor, Scratch};
use sentinel_config::Redaction;
use sentinel_demo::pii::{self, Form, Tally};
use sentinel_wire::event::{Event, Headers};

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
            find(text.as_bytes(), &Kind::ALL, &mut spans);
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

/// The event a case's request makes, as far as redaction reads it.
fn event_of(case: &pii::Case) -> Event<'static> {
    let (target, headers) = case.request(1);
    let mut e = Event::default();
    let (path, query) = target.split_once('?').map_or((target.clone(), None), |(p, q)| (p.to_string(), Some(q.to_string())));
    e.url.path = path.into();
    e.url.query = query.map(Into::into);
    e.http.request.header = Headers(headers.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
    e
}

/// The text of `field` in a redacted event.
fn field<'e>(e: &'e Event<'_>, form: Form) -> Option<&'e str> {
    match form {
        Form::Header => e.http.request.header.get("x-note"),
        Form::Referer => e.http.request.header.get("referer"),
        Form::Path => Some(&e.url.path),
        _ => e.url.query.as_deref(),
    }
}

#[test]
fn personal_data_is_caught_in_every_encoding_a_client_uses() {
    let redactor = Redactor::new(&Some(Redaction::default())).unwrap_or_else(|| unreachable!("redaction configured"));
    let mut scratch = Scratch::default();
    let mut tally = Tally::default();
    for case in pii::cases() {
        let mut e = event_of(&case);
        redactor.redact(&mut e, &mut scratch);
        tally.add(&case, field(&e, case.form));
    }
    println!("{} cases\n{}", tally.cases, tally.table());
    if let Some(short) = tally.shortfalls(0.99) {
        panic!("{short}");
    }
}
