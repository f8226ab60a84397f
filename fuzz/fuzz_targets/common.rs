/// The decoder and the one-pass transcoder agree on `frame`: where the transcoder writes a
/// line, it is the decoder's event written out; where it does not, it wrote nothing.
pub fn agree(frame: &[u8]) {
    let mut out = b"before\n".to_vec();
    let answered = sentinel_wire::event::transcode::json_line(frame, Some("fuzz"), &mut out);
    if !answered {
        assert_eq!(out, b"before\n", "a refused frame left output behind");
        return;
    }
    let mut ev = sentinel_wire::event::Event::decode(frame).expect("the transcoder took a frame the decoder refuses");
    ev.collector = Some(sentinel_wire::event::CollectorInfo { host: "fuzz".into() });
    let mut line = b"before\n".to_vec();
    ev.write_json_line(&mut line);
    assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&line), "the two paths disagree");
    // Every line written is one JSON document.
    let text = &out[7..];
    assert_eq!(text.last(), Some(&b'\n'));
    serde_json::from_slice::<serde_json::Value>(&text[..text.len() - 1]).expect("the line is JSON");
}
