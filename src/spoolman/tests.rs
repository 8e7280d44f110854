use serde_json::json;

use super::*;

#[test]
fn a_spool_is_labelled_by_id_vendor_name_and_material() {
    let spool = Spool::parse(&json!({
        "id": 3, "used_weight": 12.5, "remaining_weight": 987.5, "archived": false,
        "filament": {"id": 1, "name": "PolyTerra  Charcoal Black", "material": "PLA",
                     "vendor": {"id": 1, "name": "Polymaker"}, "density": 1.24},
        "extra": {}, "some_future_field": [1, 2]
    }))
    .unwrap();
    assert_eq!(spool.label, "#3 Polymaker PolyTerra Charcoal Black (PLA)");
    assert_eq!(spool.used_g, Some(12.5));
    assert_eq!(spool.remaining_g, Some(987.5));
    // A name that says its material is not told it twice; missing parts are left out.
    let named = json!({"id": 4, "filament": {"name": "PLA Galaxy Black", "material": "pla"}});
    assert_eq!(Spool::parse(&named).unwrap().label, "#4 PLA Galaxy Black");
    assert_eq!(Spool::parse(&json!({"id": 5})).unwrap().label, "#5");
    let pet = json!({"id": 7, "filament": {"name": "PETG Black", "material": "PET"}});
    assert_eq!(Spool::parse(&pet).unwrap().label, "#7 PETG Black (PET)");
    let long = json!({"id": 6, "filament": {"name": "x".repeat(500), "vendor": {"name": 7}}});
    let label = Spool::parse(&long).unwrap().label;
    assert_eq!(label.chars().count(), 60);
    assert!(label.ends_with('…'));
}

#[test]
fn spools_without_an_id_and_values_of_other_types_are_tolerated() {
    for bad in [
        json!({}),
        json!({"id": -1}),
        json!({"id": "3"}),
        json!({"id": 0}),
        json!(3),
    ] {
        assert_eq!(Spool::parse(&bad), None, "{bad}");
    }
    let odd = json!({"id": 9, "used_weight": "a lot", "remaining_weight": -4.0, "filament": []});
    let spool = Spool::parse(&odd).unwrap();
    assert_eq!((spool.used_g, spool.remaining_g), (None, Some(0.0)));
    assert_eq!(spool.label, "#9");
}

#[test]
fn the_list_is_by_id_without_doubles_and_bounded() {
    let mut items: Vec<_> = (1..=150u64).rev().map(|id| json!({"id": id})).collect();
    items.push(json!({"id": 7}));
    items.push(json!({"no": "id"}));
    let spools = Spool::parse_list(&json!(items)).unwrap();
    assert_eq!(spools.len(), MAX_SPOOLS);
    assert_eq!(spools[0].id, 1);
    assert_eq!(spools[MAX_SPOOLS - 1].id, MAX_SPOOLS as u64);
    let err = Spool::parse_list(&json!({"items": []})).unwrap_err();
    assert!(err.contains("not a JSON array but an object"), "{err}");
}

#[test]
fn a_spool_payload_is_an_id_a_label_or_nothing() {
    assert_eq!(Spool::id_of("12"), Ok(Some(12)));
    assert_eq!(Spool::id_of(" \"12\"\n"), Ok(Some(12)));
    assert_eq!(Spool::id_of("#12 Polymaker PLA"), Ok(Some(12)));
    for none in ["", " ", "none", "NULL", "0", NO_SPOOL] {
        assert_eq!(Spool::id_of(none), Ok(None), "{none:?}");
    }
    for bad in [
        "-3",
        "12.5",
        "abc",
        "#x",
        "{\"id\": 12}",
        "99999999999999999999999",
    ] {
        let err = Spool::id_of(bad).unwrap_err();
        assert!(err.contains("is not a Spoolman spool id"), "{bad}: {err}");
    }
}

#[test]
fn a_job_that_did_not_finish_used_its_progress_share() {
    let ended = |event: &str, grams: serde_json::Value, progress: serde_json::Value| json!({"event_type": event, "filament_g": grams, "progress": progress});
    assert_eq!(
        grams_used(&ended("FIN_OK", json!(12.34), json!(100.0))),
        Some(12.34)
    );
    assert_eq!(
        grams_used(&ended("FIN_OK", json!(12.34), json!(null))),
        Some(12.34)
    );
    assert_eq!(
        grams_used(&ended("FIN_STOPPED", json!(20.0), json!(25.0))),
        Some(5.0)
    );
    assert_eq!(
        grams_used(&ended("FIN_ERROR", json!(10.0), json!(33.333))),
        Some(3.33)
    );
    // Nothing known, nothing used: nothing reported.
    assert_eq!(
        grams_used(&ended("FIN_ERROR", json!(10.0), json!(null))),
        None
    );
    assert_eq!(
        grams_used(&ended("FIN_STOPPED", json!(10.0), json!(0.0))),
        None
    );
    assert_eq!(
        grams_used(&ended("FIN_OK", json!(null), json!(100.0))),
        None
    );
    assert_eq!(grams_used(&ended("FIN_OK", json!(0.0), json!(100.0))), None);
}
