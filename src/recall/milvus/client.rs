//! A blocking client of Milvus's HTTP API v1 (`/v1/vector/*`, Milvus 2.3), with timeouts and
//! retries with exponential backoff. Only what the recall index needs: create, describe, drop and
//! list collections; insert, query, delete and search rows.
//!
//! What HTTP v1 of Milvus 2.3.5 cannot do (checked against the real server, see docs/milvus.md):
//! index type and parameters (collections are created with AUTOINDEX and loaded on creation),
//! load/release, aliases, consistency levels, and deletion by expression (only by primary key).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::MilvusSettings;

/// The timeout of one insert call (thousands of rows; Milvus may be flushing).
const INSERT_TIMEOUT: Duration = Duration::from_secs(60);

/// A Milvus call failed.
#[derive(Debug, thiserror::Error)]
pub enum MilvusError {
    /// No answer: connection refused or reset, or a timeout (after every retry).
    #[error("Milvus at {address} did not answer {call} after {attempts} attempt(s): {detail}")]
    Unreachable {
        /// The configured address.
        address: String,
        /// The endpoint.
        call: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last transport error.
        detail: String,
    },
    /// Milvus answered with an error code.
    #[error("Milvus refused {call}: code {code}: {message}")]
    Refused {
        /// The endpoint.
        call: &'static str,
        /// Milvus's code (HTTP status or its own).
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("Milvus answered {call} with something unexpected: {detail}")]
    Malformed {
        /// The endpoint.
        call: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl MilvusError {
    fn malformed(call: &'static str, detail: impl ToString) -> Self {
        MilvusError::Malformed {
            call,
            detail: detail.to_string(),
        }
    }
}

/// The envelope of every v1 answer: `{"code": 200, "data": …}` or `{"code": …, "message": …}`.
#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    message: String,
}

/// One search hit: the row's auto id, its distance and its slot (the item's index in the service).
#[derive(Debug, Clone, Deserialize)]
pub struct SearchRow {
    /// The item slot stored with the row.
    pub slot: i64,
}

/// A row found by a query: its primary key (a 64-bit id, kept as the string Milvus sends:
/// JSON numbers lose precision above 2^53).
#[derive(Debug, Clone, Deserialize)]
pub struct QueryRow {
    /// Primary key.
    pub id: Value,
}

/// A connection-pooling client of one Milvus.
pub struct MilvusClient {
    agent: ureq::Agent,
    base: String,
    address: String,
    retries: u32,
    backoff: Duration,
}

impl MilvusClient {
    /// A client of `settings.address` (`host:port` or `http://host:port`).
    pub fn new(settings: &MilvusSettings) -> MilvusClient {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.timeout_ms))
            .build();
        let address = settings.address.trim_end_matches('/').to_string();
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.clone()
        } else {
            format!("http://{address}")
        };
        MilvusClient {
            agent,
            base,
            address,
            retries: settings.retries,
            backoff: Duration::from_millis(settings.backoff_ms),
        }
    }

    /// Calls the endpoint `call` (POST with `body`, or GET without), retrying transport failures
    /// and 5xx answers `retries` times with doubling backoff; the answer's `data`.
    fn call(&self, call: &'static str, body: Option<&Value>) -> Result<Value, MilvusError> {
        self.call_with_query(call, "", body)
    }

    /// An insert: one attempt with a generous timeout. A retried insert whose first attempt did
    /// reach Milvus would write its rows twice; a failed one fails the load or the write instead.
    fn call_insert(&self, body: &Value) -> Result<Value, MilvusError> {
        let url = format!("{}/v1/vector/insert", self.base);
        match self
            .agent
            .post(&url)
            .timeout(INSERT_TIMEOUT)
            .send_json(body)
        {
            Ok(response) => Self::unwrap_envelope("insert", response),
            Err(ureq::Error::Status(code, response)) => Err(MilvusError::Refused {
                call: "insert",
                code: i64::from(code),
                message: response.into_string().unwrap_or_default(),
            }),
            Err(e) => Err(MilvusError::Unreachable {
                address: self.address.clone(),
                call: "insert",
                attempts: 1,
                detail: e.to_string(),
            }),
        }
    }

    fn unwrap_envelope(call: &'static str, response: ureq::Response) -> Result<Value, MilvusError> {
        let envelope: Envelope = response
            .into_json()
            .map_err(|e| MilvusError::malformed(call, e))?;
        if envelope.code == 200 {
            Ok(envelope.data)
        } else {
            Err(MilvusError::Refused {
                call,
                code: envelope.code,
                message: envelope.message,
            })
        }
    }

    /// [`MilvusClient::call`] with a query string (`?…`, or empty).
    fn call_with_query(
        &self,
        call: &'static str,
        query: &str,
        body: Option<&Value>,
    ) -> Result<Value, MilvusError> {
        let url = format!("{}/v1/vector/{call}{query}", self.base);
        let mut attempts = 0;
        let mut delay = self.backoff;
        loop {
            attempts += 1;
            let sent = match body {
                Some(body) => self.agent.post(&url).send_json(body),
                None => self.agent.get(&url).call(),
            };
            let retryable = match sent {
                Ok(response) => return Self::unwrap_envelope(call, response),
                Err(ureq::Error::Status(code, response)) if code < 500 => {
                    return Err(MilvusError::Refused {
                        call,
                        code: i64::from(code),
                        message: response.into_string().unwrap_or_default(),
                    })
                }
                Err(e) => e.to_string(),
            };
            if attempts > self.retries {
                return Err(MilvusError::Unreachable {
                    address: self.address.clone(),
                    call,
                    attempts,
                    detail: retryable,
                });
            }
            std::thread::sleep(delay);
            delay = delay.saturating_mul(2);
        }
    }

    /// The collections' names.
    pub fn list_collections(&self) -> Result<Vec<String>, MilvusError> {
        let data = self.call("collections", None)?;
        serde_json::from_value(data).map_err(|e| MilvusError::malformed("collections", e))
    }

    /// Creates `name` with an auto-id primary key `id`, the float vector `vector` of `dim` and
    /// `metric` (`L2` or `IP`); other fields (the slot) are dynamic. Milvus indexes (AUTOINDEX)
    /// and loads it.
    pub fn create_collection(
        &self,
        name: &str,
        dim: usize,
        metric: &str,
    ) -> Result<(), MilvusError> {
        self.call(
            "collections/create",
            Some(&json!({
                "collectionName": name,
                "dimension": dim,
                "metricType": metric,
                "primaryField": "id",
                "vectorField": "vector",
            })),
        )?;
        Ok(())
    }

    /// The collection's description (`load` says whether it is loaded).
    pub fn describe(&self, name: &str) -> Result<Value, MilvusError> {
        // Collection names are checked to be [A-Za-z0-9_] (`collection_name`): nothing to escape.
        self.call_with_query(
            "collections/describe",
            &format!("?collectionName={name}"),
            None,
        )
    }

    /// Drops the collection.
    pub fn drop_collection(&self, name: &str) -> Result<(), MilvusError> {
        self.call("collections/drop", Some(&json!({ "collectionName": name })))?;
        Ok(())
    }

    /// Inserts rows `(slot, vector)`.
    pub fn insert(&self, name: &str, rows: &[(i64, Vec<f32>)]) -> Result<(), MilvusError> {
        let data: Vec<Value> = rows
            .iter()
            .map(|(slot, v)| json!({ "slot": slot, "vector": v }))
            .collect();
        self.call_insert(&json!({ "collectionName": name, "data": data }))?;
        Ok(())
    }

    /// Rows matching the boolean expression `filter` (at most `limit`).
    pub fn query(
        &self,
        name: &str,
        filter: &str,
        limit: usize,
    ) -> Result<Vec<QueryRow>, MilvusError> {
        let data = self.call(
            "query",
            Some(&json!({
                "collectionName": name,
                "filter": filter,
                "outputFields": ["slot"],
                "limit": limit,
            })),
        )?;
        serde_json::from_value(data).map_err(|e| MilvusError::malformed("query", e))
    }

    /// Deletes rows by primary key.
    pub fn delete(&self, name: &str, ids: &[Value]) -> Result<(), MilvusError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.call(
            "delete",
            Some(&json!({ "collectionName": name, "id": ids })),
        )?;
        Ok(())
    }

    /// The `limit` nearest rows to `vector` under the collection's metric, among those `filter`
    /// (a boolean expression) allows.
    pub fn search(
        &self,
        name: &str,
        vector: &[f32],
        limit: usize,
        filter: &str,
    ) -> Result<Vec<SearchRow>, MilvusError> {
        let data = self.call(
            "search",
            Some(&json!({
                "collectionName": name,
                "vector": vector,
                "limit": limit,
                "filter": filter,
                "outputFields": ["slot"],
            })),
        )?;
        serde_json::from_value(data).map_err(|e| MilvusError::malformed("search", e))
    }
}
