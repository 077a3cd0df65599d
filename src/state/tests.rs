use super::*;

fn doc() -> StateDoc {
    let mut d = StateDoc::new("gw-1", 1_767_225_600_000_000_000);
    d.put("counters", &vec![("a", 1.5)]).unwrap();
    d.put("later_section", &serde_json::json!({"means": [1, 2]}))
        .unwrap();
    d
}

#[test]
fn round_trip_and_sections() {
    let bytes = doc().encode().unwrap();
    let mut back = StateDoc::decode(&bytes).unwrap();
    assert_eq!(back, doc());
    let c: Option<Vec<(String, f64)>> = back.take("counters").unwrap();
    assert_eq!(c, Some(vec![("a".into(), 1.5)]));
    assert_eq!(back.take::<Vec<u8>>("absent").unwrap(), None);
    // A section of the wrong shape fails alone.
    assert!(back.take::<Vec<f64>>("later_section").is_err());
}

#[test]
fn unknown_sections_and_fields_are_kept_apart_from_version() {
    let text = br#"{"version":1,"saved_at":5,"gateway":"g","sections":{"x":{}},"extra":true}"#;
    assert_eq!(StateDoc::decode(text).unwrap().saved_at, 5);
    let v2 = br#"{"version":2,"saved_at":5,"gateway":"g"}"#;
    assert!(matches!(StateDoc::decode(v2), Err(StateError::Version(2))));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = doc().encode().unwrap();
    for cut in 0..bytes.len() {
        assert!(StateDoc::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] = 0xff;
    assert!(StateDoc::decode(&flipped).is_err());
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert!(load(&path).unwrap().is_none());
    write_atomic(&path, &doc().encode().unwrap()).unwrap();
    let mut second = doc();
    second.saved_at += 1;
    // A torn temp file from a crash is simply overwritten.
    std::fs::write(temp_path(&path), b"{\"vers").unwrap();
    write_atomic(&path, &second.encode().unwrap()).unwrap();
    assert_eq!(load(&path).unwrap(), Some(second));
    assert!(!temp_path(&path).exists());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn load_refuses_garbage_directories_and_oversize() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(load(&path), Err(StateError::Parse(_))));
    assert!(matches!(load(dir.path()), Err(StateError::Read(_))));
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(MAX_STATE_BYTES + 1).unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
}

#[test]
fn restore_results_are_counted() {
    let m = StateMetrics::default();
    m.restore(Restore::Invalid);
    assert_eq!(m.restores(Restore::Invalid), 1);
    assert_eq!(m.restores(Restore::Restored), 0);
}
