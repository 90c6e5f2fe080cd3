//! Answers of the Cache Manager's endpoints (`/get_data`; `/set_data` answers the JSON
//! string `"ok"`).

use serde::{Deserialize, Serialize};

/// `POST /get_data` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetDataResponse {
    /// The cached data (`null` on a miss).
    pub data: Option<String>,
    /// Unix seconds when `data` expires; 0 when there is no data.
    pub expiry: i64,
    /// Whether the caller now holds the key's lock and should compute and `set_data`.
    pub lock: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn wire<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("serializes")
    }

    #[test]
    fn get_data_response_is_sent_as_before() {
        let hit = GetDataResponse {
            data: Some("v".into()),
            expiry: 1700000060,
            lock: false,
        };
        let expected = r#"{"data":"v","expiry":1700000060,"lock":false}"#;
        assert_eq!(wire(&hit), expected);
        let data: Option<&str> = Some("v");
        let old = json!({"data": data, "lock": false, "expiry": 1700000060i64});
        assert_eq!(wire(&old), expected);

        let miss = GetDataResponse {
            data: None,
            expiry: 0,
            lock: true,
        };
        let expected = r#"{"data":null,"expiry":0,"lock":true}"#;
        assert_eq!(wire(&miss), expected);
        let data: Option<&str> = None;
        let old = json!({"data": data, "lock": true, "expiry": 0i64});
        assert_eq!(wire(&old), expected);
    }
}
