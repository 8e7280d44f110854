use super::*;

/// The `today` of printer A's last `P/stats` in `out`.
fn today(out: &Out) -> Option<Value> {
    out.payload("pc/mk4/stats").map(|s| s["today"].clone())
}

#[test]
fn the_days_use_counts_the_time_in_each_state_in_pieces_and_skips_gaps() {
    let mut b = Bridge::new("");
    let out = b.poll_settled(&[printing(A, "MK4", 7)]);
    assert_eq!(today(&out).unwrap()["utilization"], Value::Null);
    // Polls every 60 s: counted every 5 minutes, not at every look.
    let mut published = Vec::new();
    for _ in 0..10 {
        b.advance(60);
        published.extend(today(&b.poll_settled(&[printing(A, "MK4", 7)])));
    }
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(published[0]["printing_s"], 300);
    assert_eq!(published[1]["printing_s"], 600);
    // A change of state counts at once.
    b.advance(30);
    let idle = printer(A, "MK4", "IDLE");
    let out = b.poll_settled(std::slice::from_ref(&idle));
    assert_eq!(today(&out).unwrap()["printing_s"], 630);
    b.advance(90);
    let out = b.poll_settled(&[printing(A, "MK4", 8)]);
    let day = today(&out).unwrap();
    assert_eq!(
        (day["idle_s"].clone(), day["printing_s"].clone()),
        (json!(90), json!(630))
    );
    assert_eq!(day["utilization"], 87.5);
    assert_eq!(day["date"], "2027-01-15");
    // Not seen for an hour (Connect away): that hour is nobody's.
    b.advance(3600);
    let out = b.poll_settled(std::slice::from_ref(&idle));
    assert_eq!(today(&out).unwrap()["printing_s"], 630);
    // Kept across a restart; the time the gateway was stopped is not counted.
    let stats = b.core.state_file().printers[A].stats.days.today.clone();
    assert_eq!(stats.idle_s, 90.0);
    let mut b = Bridge::with_memory("", b.core.state_file());
    b.advance(7200);
    let out = b.poll_settled(std::slice::from_ref(&idle));
    assert_eq!(today(&out).unwrap()["printing_s"], 630);
    let mut last = None;
    for _ in 0..5 {
        b.advance(60);
        last = today(&b.poll_settled(std::slice::from_ref(&idle))).or(last);
    }
    assert_eq!(last.unwrap()["idle_s"], 390);
}
