//! Result encoding: the JSON value written to `tidal.results.<model>`.
//!
//! `{"id", "model", "model_version", "status": "ok"|"expired", "result": {...}|null}`.
//! The record key is the request's key, so results stay in order per key.

use serde::Serialize;

/// Whether the model ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The model answered; `result` holds its output.
    Ok,
    /// The request's `deadline_ms` had passed before it was processed; the model did not run.
    Expired,
}

/// One result record.
#[derive(Debug, Clone, Serialize)]
pub struct Response<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub model_version: &'a str,
    pub status: Status,
    pub result: Option<&'a serde_json::Value>,
}

/// Serialises a result record.
pub fn encode_response(response: &Response<'_>) -> Vec<u8> {
    // Serialising these plain structs cannot fail; an empty object would still be valid JSON.
    serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_wire_contract() {
        let result = serde_json::json!({"label": "positive"});
        let bytes = encode_response(&Response {
            id: "r1",
            model: "sentiment",
            model_version: "3",
            status: Status::Ok,
            result: Some(&result),
        });
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], "r1");
        assert_eq!(v["status"], "ok");
        assert_eq!(v["result"]["label"], "positive");
        let expired = encode_response(&Response {
            id: "r2",
            model: "sentiment",
            model_version: "3",
            status: Status::Expired,
            result: None,
        });
        let v: serde_json::Value = serde_json::from_slice(&expired).unwrap();
        assert_eq!(v["status"], "expired");
        assert!(v["result"].is_null());
    }
}
