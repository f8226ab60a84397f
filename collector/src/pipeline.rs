//! The stages an event passes between ingest and the sinks. Today: decode the MessagePack frame
//! into the schema (a frame that is not a valid event is refused), stamp `collector.host`, and
//! encode the NDJSON line the file sink writes.

use sentinel_wire::event::{CollectorInfo, Event, EventError};
use thiserror::Error;
use std::borrow::Cow;

/// Why a frame did not become an output record.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("cannot encode event as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Processes frames into output records. One per ingest connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pipeline {
    host: String,
}

impl Pipeline {
    pub fn new(host: String) -> Self {
        Pipeline { host }
    }

    /// Decodes one event frame and appends its NDJSON line to `out`. On error `out` is unchanged.
    pub fn process(&self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), PipelineError> {
        let mut event = Event::decode(frame)?;
        event.collector = Some(CollectorInfo { host: Cow::Borrowed(&self.host) });
        let mark = out.len();
        if let Err(e) = serde_json::to_writer(&mut *out, &event) {
            out.truncate(mark);
            return Err(e.into());
        }
        out.push(b'\n');
        Ok(())
    }
}

/// This machine's host name, for `collector.host`.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_frame_becomes_one_json_line() {
        let ev = Event { event: sentinel_wire::event::EventInfo { id: "x".into(), start_ns: 1, end_ns: 2 }, ..Default::default() };
        let mut frame = Vec::new();
        ev.encode_into(&mut frame).unwrap();
        let mut out = b"prev\n".to_vec();
        Pipeline::new("h1".into()).process(&frame, &mut out).unwrap();
        let line = std::str::from_utf8(&out[5..]).unwrap();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["event"]["id"], "x");
        assert_eq!(v["collector"]["host"], "h1");
    }

    #[test]
    fn garbage_leaves_output_untouched() {
        let mut out = b"prev\n".to_vec();
        assert!(Pipeline::new("h".into()).process(b"\xc1\xc1garbage", &mut out).is_err());
        assert_eq!(out, b"prev\n");
    }
}
