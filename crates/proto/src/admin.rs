//! Answers of the admin endpoints: `/admin/list`, `/admin/namespaces` and `/admin/fetch`.

use serde::{Deserialize, Serialize};

/// `POST /admin/list` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListResponse {
    /// Its live keys, sorted.
    pub keys: Vec<ListedKey>,
    /// The namespace as it was asked for.
    pub namespace: String,
    /// Whether more keys exist than were returned (raise `limit`).
    pub truncated: bool,
}

/// One key in a [`ListResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedKey {
    /// Size of its data in bytes.
    pub bytes: u64,
    /// When it expires.
    pub expires_at: f64,
    /// The key.
    pub key: String,
    /// The item's timestamp.
    pub timestamp: f64,
}

/// `GET /admin/namespaces` answer: every namespace with live items on the node that
/// answered, with the limits they count against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespacesResponse {
    /// Bytes of item data the node holds.
    pub bytes: u64,
    /// Items the node holds.
    pub items: u64,
    /// The store's item limit.
    pub max_items: u64,
    /// The per-namespace item limit (`null`: none).
    pub max_items_per_namespace: Option<u64>,
    /// Every namespace with live items, sorted.
    pub namespaces: Vec<NamespaceSummary>,
    /// The node's time of the count (Unix seconds).
    pub now: f64,
}

/// One namespace in a [`NamespacesResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceSummary {
    /// Sum of its items' data sizes, in bytes.
    pub bytes: u64,
    /// Its live items.
    pub items: u64,
    /// Its name; a protected namespace by its decoded name, never its token.
    pub namespace: String,
    /// The earliest expiry among its items (Unix seconds; `null` when unknown).
    pub next_expiry: Option<f64>,
    /// Whether it is a protected namespace.
    pub protected: bool,
}

/// `POST /admin/fetch` answer: one item, for the console's "show value". Its keys are in
/// alphabetical order, unlike [`crate::FetchDataResponse`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminFetchResponse {
    /// The stored data.
    pub data: String,
    /// When it expires (Unix seconds).
    pub expires_at: f64,
    /// The item's timestamp (Unix seconds).
    pub timestamp: f64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn wire<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("serializes")
    }

    #[test]
    fn list_response_is_sent_as_before() {
        let answer = ListResponse {
            keys: vec![ListedKey {
                bytes: 5,
                expires_at: 1700000060.5,
                key: "k".into(),
                timestamp: 1700000000.25,
            }],
            namespace: "PLUGIN#x".into(),
            truncated: false,
        };
        let expected = r#"{"keys":[{"bytes":5,"expires_at":1700000060.5,"key":"k","timestamp":1700000000.25}],"namespace":"PLUGIN#x","truncated":false}"#;
        assert_eq!(wire(&answer), expected);
        let old = json!({
            "namespace": "PLUGIN#x",
            "keys": [json!({
                "key": "k",
                "timestamp": 1700000000.25,
                "expires_at": 1700000060.5,
                "bytes": 5usize,
            })],
            "truncated": false,
        });
        assert_eq!(wire(&old), expected);
    }

    #[test]
    fn namespaces_response_is_sent_as_before() {
        let answer = NamespacesResponse {
            bytes: 300,
            items: 7,
            max_items: 1_000_000,
            max_items_per_namespace: None,
            namespaces: vec![
                NamespaceSummary {
                    bytes: 100,
                    items: 2,
                    namespace: "a".into(),
                    next_expiry: Some(1700000100.5),
                    protected: false,
                },
                NamespaceSummary {
                    bytes: 200,
                    items: 5,
                    namespace: "b".into(),
                    next_expiry: None,
                    protected: true,
                },
            ],
            now: 1700000000.0,
        };
        let expected = r#"{"bytes":300,"items":7,"max_items":1000000,"max_items_per_namespace":null,"namespaces":[{"bytes":100,"items":2,"namespace":"a","next_expiry":1700000100.5,"protected":false},{"bytes":200,"items":5,"namespace":"b","next_expiry":null,"protected":true}],"now":1700000000.0}"#;
        assert_eq!(wire(&answer), expected);
        let row = |name: &str, protected: bool, items: u64, bytes: u64, next: Option<f64>| {
            json!({
                "namespace": name,
                "protected": protected,
                "items": items,
                "bytes": bytes,
                "next_expiry": next,
            })
        };
        let old = json!({
            "now": 1700000000.0,
            "items": 7u64,
            "bytes": 300u64,
            "max_items": 1_000_000u64,
            "max_items_per_namespace": None::<u64>,
            "namespaces": vec![
                row("a", false, 2, 100, Some(1700000100.5)),
                row("b", true, 5, 200, None),
            ],
        });
        assert_eq!(wire(&old), expected);
        let with_limit = NamespacesResponse {
            max_items_per_namespace: Some(10),
            namespaces: vec![],
            ..answer
        };
        assert!(wire(&with_limit).contains(r#""max_items_per_namespace":10,"namespaces":[]"#));
    }

    #[test]
    fn admin_fetch_response_keeps_its_alphabetical_key_order() {
        let answer = AdminFetchResponse {
            data: "{\"a\":1}".into(),
            expires_at: 1700000060.0,
            timestamp: 1700000000.123,
        };
        let expected =
            r#"{"data":"{\"a\":1}","expires_at":1700000060.0,"timestamp":1700000000.123}"#;
        assert_eq!(wire(&answer), expected);
        let old = json!({
            "data": "{\"a\":1}",
            "timestamp": 1700000000.123,
            "expires_at": 1700000060.0,
        });
        assert_eq!(wire(&old), expected);
    }
}
