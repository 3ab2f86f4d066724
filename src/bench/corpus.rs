//! The requests every target answers: short film-review snippets (10–20 tokens, the size of a
//! Rotten Tomatoes snippet), cycled in a fixed order so that each run sees the same mix.

const TEXTS: &[&str] = &[
    "An absolute masterpiece, moving and beautifully acted from the first scene to the last.",
    "A boring, clumsy mess that wastes its talented cast on a script nobody believed in.",
    "One of the best films of the year: funny, warm and wise without trying too hard.",
    "Worst two hours of my life, and the sequel is somehow even longer. Avoid.",
    "The plot was fine, but the ending dragged on far too long for my taste.",
    "A charming little comedy that never outstays its welcome.",
    "I loved every minute of this strange, tender and surprising film.",
    "Not my cup of tea, though the soundtrack is lovely and the actors try.",
    "Predictable, loud and hollow; the effects cannot hide the empty story.",
    "A quiet triumph that trusts its audience and rewards its patience.",
    "The jokes land rarely and the pacing is a chore to sit through.",
    "Gorgeous to look at and surprisingly moving in its final act.",
    "It wants to be clever but ends up smug, slow and forgettable.",
    "A smart, tense thriller with a performance you will remember for years.",
    "Too long, too loud and too pleased with itself to be any fun.",
    "Funny, sad and true: the rare crowd pleaser that earns its tears.",
];

/// The text of request number `seq`.
pub fn text(seq: u64) -> &'static str {
    TEXTS[(seq % TEXTS.len() as u64) as usize]
}

/// The JSON request number `seq`: `{"id": "r<seq>", "text": ...}`.
pub fn request(seq: u64) -> String {
    serde_json::json!({ "id": format!("r{seq}"), "text": text(seq) }).to_string()
}

/// The sequence number back from a result's JSON value (`"id": "r<seq>"`).
pub fn seq_of_result(value: &[u8]) -> Option<u64> {
    let parsed: serde_json::Value = serde_json::from_slice(value).ok()?;
    parsed.get("id")?.as_str()?.strip_prefix('r')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_a_result() {
        let result = format!(r#"{{"id":"r{}","status":"ok"}}"#, 4242);
        assert_eq!(seq_of_result(result.as_bytes()), Some(4242));
        assert_eq!(seq_of_result(br#"{"id":"x1"}"#), None);
        assert_eq!(seq_of_result(b"not json"), None);
        let request: serde_json::Value = serde_json::from_str(&request(17)).unwrap();
        assert_eq!(request["id"], "r17");
        assert_eq!(request["text"], text(1));
    }
}
