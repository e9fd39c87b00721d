//! A blocking client of Milvus's gRPC API (`milvus.proto.milvus.MilvusService`, Milvus 2.3), with
//! timeouts and retries with exponential backoff. Only the calls the recall index needs:
//! collections (create with a schema and a consistency level, has, list, describe, drop), rows
//! (insert, query, delete by expression), search with index parameters (`ef`) and a consistency
//! level, flush, index (create with HNSW/IVF parameters, describe), load and its state, aliases
//! (create, alter, describe, drop), and the segments a query node serves.
//!
//! The messages are derived by hand (`proto.rs`); tonic's client carries them over hyper's
//! HTTP/2 on one process-wide runtime thread, and each call blocks its caller (the recall index
//! is searched from the blocking pool) on a channel, which is safe from any thread.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::proto::{self, ConsistencyLevel, IndexState, KeyValuePair, LoadState, SegmentState};
use super::MilvusSettings;

/// The timeout of one insert or flush call (thousands of rows; Milvus may be sealing segments).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer accepted (Milvus's own default send limit is larger than tonic's 4 MB).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The longest wait between two attempts of a call, however many retries and however long
/// `backoff_ms`: a doubling without cap would leave a caller waiting minutes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often an HTTP/2 ping checks that a connection still answers. A connection whose peer
/// vanished (a timed-out attempt leaves it pooled and looking open) is closed and replaced once a
/// ping goes unanswered; Milvus answers pings more often than every 5 s with GOAWAY.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a ping may go unanswered before its connection is closed.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle time before the kernel probes a connection (TCP keepalive): a peer gone without a FIN
/// (a host lost, a NAT entry expired) is noticed even where HTTP/2 pings are not sent.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// The service every call is a method of.
const SERVICE: &str = "/milvus.proto.milvus.MilvusService/";

/// A Milvus call failed.
#[derive(Debug, thiserror::Error)]
pub enum MilvusError {
    /// No answer: connection refused or reset, or a timeout (after every retry).
    #[error("Milvus at {address} did not answer {call} after {attempts} attempt(s): {detail}")]
    Unreachable {
        /// The configured address.
        address: String,
        /// The RPC.
        call: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last transport error.
        detail: String,
    },
    /// Milvus answered with an error.
    #[error("Milvus refused {call}: code {code}: {message}")]
    Refused {
        /// The RPC.
        call: &'static str,
        /// Milvus's code (its status code, or the gRPC code).
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer was not what the call expects.
    #[error("Milvus answered {call} with something unexpected: {detail}")]
    Malformed {
        /// The RPC.
        call: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The client's runtime thread could not be started.
    #[error("the Milvus client could not start its runtime: {0}")]
    Runtime(String),
}

/// How fresh a read must be (Milvus's consistency levels, `milvus.proto.common.ConsistencyLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Sees every write acknowledged before the read (waits for the query nodes to catch up).
    Strong,
    /// Sees this client's own writes (their timestamp is sent with the read).
    Session,
    /// Sees writes older than Milvus's `gracefulTime` (5 s by default).
    Bounded,
    /// Sees whatever the query nodes hold now.
    Eventually,
}

impl Consistency {
    fn wire(self) -> ConsistencyLevel {
        match self {
            Consistency::Strong => ConsistencyLevel::Strong,
            Consistency::Session => ConsistencyLevel::Session,
            Consistency::Bounded => ConsistencyLevel::Bounded,
            Consistency::Eventually => ConsistencyLevel::Eventually,
        }
    }

    /// The level a collection reports in its description.
    pub fn from_wire(level: i32) -> Option<Consistency> {
        match ConsistencyLevel::try_from(level).ok()? {
            ConsistencyLevel::Strong => Some(Consistency::Strong),
            ConsistencyLevel::Session => Some(Consistency::Session),
            ConsistencyLevel::Bounded => Some(Consistency::Bounded),
            ConsistencyLevel::Eventually => Some(Consistency::Eventually),
            ConsistencyLevel::Customized => None,
        }
    }
}

/// What a collection's vector index is built as.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    /// Milvus's index type (`HNSW`, `IVF_FLAT`, `FLAT`).
    pub index_type: &'static str,
    /// `L2` or `IP`.
    pub metric: &'static str,
    /// The build parameters as Milvus's JSON object (`{"M": 16, "efConstruction": 200}`).
    pub params: serde_json::Value,
}

/// An index as Milvus describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexStatus {
    /// Its parameters as Milvus lists them (`index_type`, `metric_type`, `params`, ...).
    pub params: HashMap<String, String>,
    /// Rows indexed so far.
    pub indexed_rows: i64,
    /// Rows of the collection's sealed segments.
    pub total_rows: i64,
    /// Rows waiting for their index.
    pub pending_rows: i64,
    /// Whether building is finished (`Finished`), and why it failed when it did.
    pub finished: bool,
    /// The failure reason when building failed.
    pub failure: Option<String>,
}

/// One segment a query node serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its id.
    pub id: i64,
    /// Its rows.
    pub rows: i64,
    /// `Growing`, `Sealed`, `Flushed`, ...
    pub state: String,
    /// The index it is searched with (empty when none: brute force or the interim index).
    pub index_name: String,
}

/// A search hit: the slot stored with the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchRow {
    /// The item slot stored with the row.
    pub slot: i64,
    /// Milvus's distance (or inner product under `IP`).
    pub distance: f32,
}

/// A row found by a query: primary key and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryRow {
    /// Primary key (auto id).
    pub id: i64,
    /// The item slot.
    pub slot: i64,
}

type Transport = Client<HttpConnector, tonic::body::Body>;

/// The runtime every Milvus call runs on: one thread for the whole process, never dropped (a
/// runtime dropped on an async worker panics, and clients are dropped with models anywhere).
fn runtime() -> Result<&'static tokio::runtime::Runtime, MilvusError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("milvus-grpc")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| MilvusError::Runtime(e.clone()))
}

/// A connection-pooling gRPC client of one Milvus.
pub struct MilvusClient {
    grpc: tonic::client::Grpc<Transport>,
    address: String,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    /// The latest write timestamp per collection: what a `Session` read must see.
    session: Mutex<HashMap<String, u64>>,
}

/// Whether a failed call may be tried again: transport failures and timeouts, not refusals.
fn retryable(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
    )
}

/// Milvus's own status: `Ok` on success (both its codes 0).
fn check(call: &'static str, status: Option<&proto::Status>) -> Result<(), MilvusError> {
    match status {
        Some(s) if s.error_code != 0 || s.code != 0 => Err(MilvusError::Refused {
            call,
            code: i64::from(if s.code != 0 { s.code } else { s.error_code }),
            message: s.reason.clone(),
        }),
        _ => Ok(()),
    }
}

/// The RPC that points an alias now naming `current` at `target`: `CreateAlias` when it names
/// nothing, `AlterAlias` (one atomic move in Milvus: readers see the old or the new collection,
/// never none) when it names another, nothing when it already names `target`.
pub fn alias_call(current: Option<&str>, target: &str) -> Option<&'static str> {
    match current {
        Some(current) if current == target => None,
        Some(_) => Some("AlterAlias"),
        None => Some("CreateAlias"),
    }
}

/// The wait before retry `retry` (0 first) of a call whose first backoff is `first`: doubling,
/// at most [`MAX_BACKOFF`].
fn backoff(first: Duration, retry: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(retry))
        .min(MAX_BACKOFF)
}

/// The column `field` of an answer as integers: `None` when the answer lacks it, empty when it
/// is there without data (how an empty answer may list its columns). **Errors** when it holds
/// vectors.
fn long_column<'a>(
    call: &'static str,
    fields: &'a [proto::FieldData],
    field: &str,
) -> Result<Option<&'a [i64]>, MilvusError> {
    let Some(column) = fields.iter().find(|f| f.field_name == field) else {
        return Ok(None);
    };
    if let Some(longs) = column.as_longs() {
        return Ok(Some(longs));
    }
    match &column.field {
        Some(proto::Field::Vectors(_)) => Err(MilvusError::malformed(
            call,
            format!("column {field} holds vectors, not int64"),
        )),
        // No data, or a scalar arm not decoded here: as many rows as the other column must agree.
        _ => Ok(Some(&[])),
    }
}

/// The rows of a Query answer. An empty answer may come without its columns; one with rows in
/// one column and the other missing is malformed, not "nothing found" (a missing sentinel makes
/// the load drop the collection).
fn query_rows(answer: &proto::QueryResults) -> Result<Vec<QueryRow>, MilvusError> {
    let ids = long_column("Query", &answer.fields_data, "id")?;
    let slots = long_column("Query", &answer.fields_data, "slot")?;
    let (ids, slots) = match (ids, slots) {
        (Some(ids), Some(slots)) => (ids, slots),
        (None, None) => return Ok(Vec::new()),
        (Some(rows), None) | (None, Some(rows)) if rows.is_empty() => return Ok(Vec::new()),
        (Some(_), None) => return Err(MilvusError::malformed("Query", "rows without slots")),
        (None, Some(_)) => return Err(MilvusError::malformed("Query", "rows without ids")),
    };
    if ids.len() != slots.len() {
        return Err(MilvusError::malformed("Query", "columns of unequal length"));
    }
    Ok(ids
        .iter()
        .zip(slots)
        .map(|(&id, &slot)| QueryRow { id, slot })
        .collect())
}

/// The hits of a Search answer. No results, or no scores and no `slot` column, is nothing
/// found; scores without their slots are malformed.
fn search_rows(answer: &proto::SearchResults) -> Result<Vec<SearchRow>, MilvusError> {
    let Some(results) = &answer.results else {
        return Ok(Vec::new());
    };
    let Some(slots) = long_column("Search", &results.fields_data, "slot")? else {
        if results.scores.is_empty() {
            return Ok(Vec::new());
        }
        return Err(MilvusError::malformed(
            "Search",
            format!("{} scores without their slot column", results.scores.len()),
        ));
    };
    if slots.len() != results.scores.len() {
        return Err(MilvusError::malformed(
            "Search",
            format!("{} slots for {} scores", slots.len(), results.scores.len()),
        ));
    }
    Ok(slots
        .iter()
        .zip(&results.scores)
        .map(|(&slot, &distance)| SearchRow { slot, distance })
        .collect())
}

impl MilvusClient {
    /// A client of `settings.address` (`host:port` or `http://host:port`). **Errors** when the
    /// address is not a URI authority or the runtime thread cannot start.
    pub fn new(settings: &MilvusSettings) -> Result<MilvusClient, MilvusError> {
        let address = settings.address.trim_end_matches('/').to_string();
        let origin = if address.starts_with("http://") {
            address.clone()
        } else {
            format!("http://{address}")
        };
        let origin: http::Uri = origin.parse().map_err(|e| MilvusError::Refused {
            call: "connect",
            code: 0,
            message: format!("index.milvus.address {address:?} is not host:port: {e}"),
        })?;
        let runtime = runtime()?;
        let _entered = runtime.enter();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        // Without a timer hyper sends no pings: a dead pooled connection would be reused by every
        // later attempt, each timing out, and never replaced.
        let transport = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
            .http2_keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build(connector);
        let grpc = tonic::client::Grpc::with_origin(transport, origin)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(MilvusClient {
            grpc,
            address,
            timeout: Duration::from_millis(settings.timeout_ms),
            retries: settings.retries,
            backoff: Duration::from_millis(settings.backoff_ms),
            session: Mutex::new(HashMap::new()),
        })
    }

    /// Calls `method` with `request`: each attempt bounded by `timeout` (sent as the call's gRPC
    /// deadline too, so Milvus abandons work nobody waits for), transport failures and timeouts
    /// retried `retries` times with doubling backoff capped at [`MAX_BACKOFF`] (`retry` false: one
    /// attempt, for writes that a retry could apply twice).
    fn unary<Req, Resp>(
        &self,
        call: &'static str,
        request: Req,
        timeout: Duration,
        retry: bool,
    ) -> Result<Resp, MilvusError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        let address = self.address.clone();
        let retries = if retry { self.retries } else { 0 };
        let first_backoff = self.backoff;
        let path = PathAndQuery::try_from(format!("{SERVICE}{call}"))
            .map_err(|e| MilvusError::malformed(call, e))?;
        let attempt_all = async move {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let attempt = async {
                    grpc.ready()
                        .await
                        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
                    let mut message = tonic::Request::new(request.clone());
                    message.set_timeout(timeout);
                    grpc.unary(message, path.clone(), codec).await
                };
                let detail = match tokio::time::timeout(timeout, attempt).await {
                    Ok(Ok(answer)) => return Ok(answer.into_inner()),
                    Ok(Err(status)) if !retryable(status.code()) => {
                        return Err(MilvusError::Refused {
                            call,
                            code: status.code() as i64,
                            message: status.message().to_string(),
                        })
                    }
                    Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
                    Err(_) => format!("no answer within {} ms", timeout.as_millis()),
                };
                if attempts > retries {
                    return Err(MilvusError::Unreachable {
                        address,
                        call,
                        attempts,
                        detail,
                    });
                }
                tokio::time::sleep(backoff(first_backoff, attempts - 1)).await;
            }
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        runtime()?.spawn(async move {
            let _ = sender.send(attempt_all.await);
        });
        receiver
            .recv()
            .map_err(|_| MilvusError::Runtime("the call's task ended without an answer".into()))?
    }

    /// The collections' names.
    pub fn list_collections(&self) -> Result<Vec<String>, MilvusError> {
        let answer: proto::ShowCollectionsResponse = self.unary(
            "ShowCollections",
            proto::ShowCollectionsRequest {},
            self.timeout,
            true,
        )?;
        check("ShowCollections", answer.status.as_ref())?;
        Ok(answer.collection_names)
    }

    /// Whether the collection (or an alias of that name) exists.
    pub fn has_collection(&self, name: &str) -> Result<bool, MilvusError> {
        let answer: proto::BoolResponse = self.unary(
            "HasCollection",
            proto::HasCollectionRequest {
                collection_name: name.into(),
            },
            self.timeout,
            true,
        )?;
        check("HasCollection", answer.status.as_ref())?;
        Ok(answer.value)
    }

    /// Creates `name`: an auto-id int64 primary key `id`, the int64 `slot` and the float vector
    /// `vector` of `dim`, one shard, reads at `consistency` unless a call says otherwise.
    pub fn create_collection(
        &self,
        name: &str,
        dim: usize,
        consistency: Consistency,
    ) -> Result<(), MilvusError> {
        let schema = proto::CollectionSchema {
            name: name.into(),
            description: "fmrecall item vectors".into(),
            fields: vec![
                proto::FieldSchema {
                    name: "id".into(),
                    is_primary_key: true,
                    data_type: proto::data_type::INT64,
                    type_params: Vec::new(),
                    auto_id: true,
                },
                proto::FieldSchema {
                    name: "slot".into(),
                    is_primary_key: false,
                    data_type: proto::data_type::INT64,
                    type_params: Vec::new(),
                    auto_id: false,
                },
                proto::FieldSchema {
                    name: "vector".into(),
                    is_primary_key: false,
                    data_type: proto::data_type::FLOAT_VECTOR,
                    type_params: vec![KeyValuePair::new("dim", dim.to_string())],
                    auto_id: false,
                },
            ],
        };
        let answer: proto::Status = self.unary(
            "CreateCollection",
            proto::CreateCollectionRequest {
                collection_name: name.into(),
                schema: prost::Message::encode_to_vec(&schema),
                shards_num: 1,
                consistency_level: consistency.wire() as i32,
            },
            self.timeout.max(WRITE_TIMEOUT),
            false,
        )?;
        check("CreateCollection", Some(&answer))
    }

    /// The collection's default consistency level and aliases.
    pub fn describe_collection(
        &self,
        name: &str,
    ) -> Result<(Option<Consistency>, Vec<String>), MilvusError> {
        let answer: proto::DescribeCollectionResponse = self.unary(
            "DescribeCollection",
            proto::DescribeCollectionRequest {
                collection_name: name.into(),
            },
            self.timeout,
            true,
        )?;
        check("DescribeCollection", answer.status.as_ref())?;
        Ok((
            Consistency::from_wire(answer.consistency_level),
            answer.aliases,
        ))
    }

    /// Drops the collection.
    pub fn drop_collection(&self, name: &str) -> Result<(), MilvusError> {
        let answer: proto::Status = self.unary(
            "DropCollection",
            proto::DropCollectionRequest {
                collection_name: name.into(),
            },
            self.timeout.max(WRITE_TIMEOUT),
            true,
        )?;
        check("DropCollection", Some(&answer))?;
        self.lock_session().remove(name);
        Ok(())
    }

    /// Builds the index of the `vector` field.
    pub fn create_index(&self, name: &str, spec: &IndexSpec) -> Result<(), MilvusError> {
        let answer: proto::Status = self.unary(
            "CreateIndex",
            proto::CreateIndexRequest {
                collection_name: name.into(),
                field_name: "vector".into(),
                extra_params: vec![
                    KeyValuePair::new("index_type", spec.index_type),
                    KeyValuePair::new("metric_type", spec.metric),
                    KeyValuePair::new("params", spec.params.to_string()),
                ],
                index_name: "vector".into(),
            },
            self.timeout.max(WRITE_TIMEOUT),
            true,
        )?;
        check("CreateIndex", Some(&answer))
    }

    /// The `vector` field's index; `None` when it has none.
    pub fn describe_index(&self, name: &str) -> Result<Option<IndexStatus>, MilvusError> {
        let answer: proto::DescribeIndexResponse = self.unary(
            "DescribeIndex",
            proto::DescribeIndexRequest {
                collection_name: name.into(),
                field_name: "vector".into(),
            },
            self.timeout,
            true,
        )?;
        if let Some(status) = &answer.status {
            // "index not found" is an answer here, not a failure (code 700 / IndexNotExist).
            if status.error_code == 25 || status.code == 700 {
                return Ok(None);
            }
        }
        check("DescribeIndex", answer.status.as_ref())?;
        Ok(answer.index_descriptions.into_iter().next().map(|d| {
            let state = IndexState::try_from(d.state).unwrap_or(IndexState::None);
            IndexStatus {
                params: d.params.into_iter().map(|p| (p.key, p.value)).collect(),
                indexed_rows: d.indexed_rows,
                total_rows: d.total_rows,
                pending_rows: d.pending_index_rows,
                finished: state == IndexState::Finished,
                failure: (state == IndexState::Failed).then_some(d.index_state_fail_reason),
            }
        }))
    }

    /// Seals the collection's growing segments and waits until they are persisted, so that each
    /// gets its index built: rows in growing segments are searched by Milvus's interim IVF index
    /// (nprobe 16 of nlist 128 in 2.3.5), which misses neighbours (docs/milvus.md).
    pub fn flush(&self, name: &str, deadline: std::time::Instant) -> Result<(), MilvusError> {
        let answer: proto::FlushResponse = self.unary(
            "Flush",
            proto::FlushRequest {
                collection_names: vec![name.into()],
            },
            WRITE_TIMEOUT,
            true,
        )?;
        check("Flush", answer.status.as_ref())?;
        let segments = answer
            .coll_seg_ids
            .get(name)
            .map(|l| l.data.clone())
            .unwrap_or_default();
        let flush_ts = answer.coll_flush_ts.get(name).copied().unwrap_or(0);
        loop {
            let state: proto::GetFlushStateResponse = self.unary(
                "GetFlushState",
                proto::GetFlushStateRequest {
                    segment_ids: segments.clone(),
                    flush_ts,
                    collection_name: name.into(),
                },
                self.timeout,
                true,
            )?;
            check("GetFlushState", state.status.as_ref())?;
            if state.flushed {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(MilvusError::Unreachable {
                    address: self.address.clone(),
                    call: "GetFlushState",
                    attempts: 1,
                    detail: format!("collection {name} not flushed before the deadline"),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asks the query nodes to load the collection (returns at once; see `load_state`).
    pub fn load_collection(&self, name: &str) -> Result<(), MilvusError> {
        let answer: proto::Status = self.unary(
            "LoadCollection",
            proto::LoadCollectionRequest {
                collection_name: name.into(),
                replica_number: 1,
            },
            self.timeout.max(WRITE_TIMEOUT),
            true,
        )?;
        check("LoadCollection", Some(&answer))
    }

    /// Whether the collection is loaded (`true`), loading or not loaded (`false`).
    pub fn is_loaded(&self, name: &str) -> Result<bool, MilvusError> {
        Ok(self.load_state(name)? == "Loaded")
    }

    /// The load state's name: `Loaded`, `Loading`, `NotLoad` or `NotExist`.
    pub fn load_state(&self, name: &str) -> Result<&'static str, MilvusError> {
        let answer: proto::GetLoadStateResponse = self.unary(
            "GetLoadState",
            proto::GetLoadStateRequest {
                collection_name: name.into(),
            },
            self.timeout,
            true,
        )?;
        check("GetLoadState", answer.status.as_ref())?;
        Ok(match LoadState::try_from(answer.state) {
            Ok(LoadState::Loaded) => "Loaded",
            Ok(LoadState::Loading) => "Loading",
            Ok(LoadState::NotLoad) => "NotLoad",
            _ => "NotExist",
        })
    }

    /// The segments the query nodes serve for the collection (sealed ones: growing segments are
    /// not listed by Milvus 2.3).
    pub fn query_segments(&self, name: &str) -> Result<Vec<SegmentInfo>, MilvusError> {
        let answer: proto::GetQuerySegmentInfoResponse = self.unary(
            "GetQuerySegmentInfo",
            proto::GetQuerySegmentInfoRequest {
                collection_name: name.into(),
            },
            self.timeout,
            true,
        )?;
        check("GetQuerySegmentInfo", answer.status.as_ref())?;
        Ok(answer
            .infos
            .into_iter()
            .map(|s| SegmentInfo {
                id: s.segment_id,
                rows: s.num_rows,
                state: format!(
                    "{:?}",
                    SegmentState::try_from(s.state).unwrap_or(SegmentState::None)
                ),
                index_name: s.index_name,
            })
            .collect())
    }

    /// Points `alias` at `collection`, atomically for its readers: created when absent, altered
    /// (moved) when it names another collection.
    pub fn point_alias(&self, alias: &str, collection: &str) -> Result<(), MilvusError> {
        let request = proto::AliasRequest {
            collection_name: collection.into(),
            alias: alias.into(),
        };
        let Some(call) = alias_call(self.describe_alias(alias)?.as_deref(), collection) else {
            return Ok(());
        };
        let answer: proto::Status = self.unary(call, request, self.timeout, true)?;
        check(call, Some(&answer))
    }

    /// The collection `alias` names; `None` when there is no such alias.
    pub fn describe_alias(&self, alias: &str) -> Result<Option<String>, MilvusError> {
        let answer: proto::DescribeAliasResponse = self.unary(
            "DescribeAlias",
            proto::AliasNameRequest {
                alias: alias.into(),
            },
            self.timeout,
            true,
        )?;
        // 2.3.5 answers an unknown alias with an error status: absence, not a failure.
        match check("DescribeAlias", answer.status.as_ref()) {
            Ok(()) if !answer.collection.is_empty() => Ok(Some(answer.collection)),
            Ok(()) => Ok(None),
            Err(MilvusError::Refused { message, .. })
                if message.contains("not exist") || message.contains("not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Drops `alias` (the collection stays).
    pub fn drop_alias(&self, alias: &str) -> Result<(), MilvusError> {
        let answer: proto::Status = self.unary(
            "DropAlias",
            proto::AliasNameRequest {
                alias: alias.into(),
            },
            self.timeout,
            true,
        )?;
        check("DropAlias", Some(&answer))
    }

    /// Inserts rows `(slot, vector)` of `dim`; one attempt (a retried insert that did reach Milvus
    /// would write its rows twice). Remembers the write's timestamp for `Session` reads.
    pub fn insert(
        &self,
        name: &str,
        dim: usize,
        rows: &[(i64, Vec<f32>)],
    ) -> Result<(), MilvusError> {
        let mut flat = Vec::with_capacity(rows.len() * dim);
        for (_, v) in rows {
            if v.len() != dim {
                return Err(MilvusError::malformed(
                    "Insert",
                    format!("a row of {} values for dim {dim}", v.len()),
                ));
            }
            flat.extend_from_slice(v);
        }
        let answer: proto::MutationResult = self.unary(
            "Insert",
            proto::InsertRequest {
                collection_name: name.into(),
                fields_data: vec![
                    proto::FieldData::longs("slot", rows.iter().map(|r| r.0).collect()),
                    proto::FieldData::float_vectors("vector", dim, flat),
                ],
                num_rows: rows.len() as u32,
            },
            WRITE_TIMEOUT,
            false,
        )?;
        check("Insert", answer.status.as_ref())?;
        self.remember_write(name, answer.timestamp);
        Ok(())
    }

    /// Deletes the rows whose primary key is in `ids`.
    pub fn delete(&self, name: &str, ids: &[i64]) -> Result<(), MilvusError> {
        if ids.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let answer: proto::MutationResult = self.unary(
            "Delete",
            proto::DeleteRequest {
                collection_name: name.into(),
                expr: format!("id in [{}]", list.join(",")),
            },
            WRITE_TIMEOUT,
            true,
        )?;
        check("Delete", answer.status.as_ref())?;
        self.remember_write(name, answer.timestamp);
        Ok(())
    }

    /// Rows matching the boolean expression `filter` (at most `limit`), read at `consistency`.
    pub fn query(
        &self,
        name: &str,
        filter: &str,
        limit: usize,
        consistency: Consistency,
    ) -> Result<Vec<QueryRow>, MilvusError> {
        let answer: proto::QueryResults = self.unary(
            "Query",
            proto::QueryRequest {
                collection_name: name.into(),
                expr: filter.into(),
                output_fields: vec!["id".into(), "slot".into()],
                query_params: vec![KeyValuePair::new("limit", limit.to_string())],
                consistency_level: consistency.wire() as i32,
                use_default_consistency: false,
                guarantee_timestamp: self.guarantee(name, consistency),
            },
            self.timeout,
            true,
        )?;
        check("Query", answer.status.as_ref())?;
        query_rows(&answer)
    }

    /// The `limit` nearest rows to `vector` under the collection's metric, among those `filter`
    /// allows, searched with the index parameters `params` (`{"ef": 200}` for HNSW) at
    /// `consistency`.
    pub fn search(
        &self,
        name: &str,
        vector: &[f32],
        limit: usize,
        filter: &str,
        params: &serde_json::Value,
        consistency: Consistency,
    ) -> Result<Vec<SearchRow>, MilvusError> {
        let mut bytes = Vec::with_capacity(vector.len() * 4);
        for x in vector {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let group = proto::PlaceholderGroup {
            placeholders: vec![proto::PlaceholderValue {
                tag: "$0".into(),
                r#type: proto::PLACEHOLDER_FLOAT_VECTOR,
                values: vec![bytes],
            }],
        };
        let answer: proto::SearchResults = self.unary(
            "Search",
            proto::SearchRequest {
                collection_name: name.into(),
                dsl: filter.into(),
                placeholder_group: prost::Message::encode_to_vec(&group),
                dsl_type: proto::DSL_BOOL_EXPR_V1,
                output_fields: vec!["slot".into()],
                search_params: vec![
                    KeyValuePair::new("anns_field", "vector"),
                    KeyValuePair::new("topk", limit.to_string()),
                    KeyValuePair::new("params", params.to_string()),
                    KeyValuePair::new("round_decimal", "-1"),
                ],
                guarantee_timestamp: self.guarantee(name, consistency),
                nq: 1,
                consistency_level: consistency.wire() as i32,
                use_default_consistency: false,
            },
            self.timeout,
            true,
        )?;
        check("Search", answer.status.as_ref())?;
        search_rows(&answer)
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember_write(&self, name: &str, timestamp: u64) {
        let mut session = self.lock_session();
        let latest = session.entry(name.to_string()).or_insert(0);
        *latest = (*latest).max(timestamp);
    }

    /// The guarantee timestamp a read at `consistency` sends: Milvus sets it itself for
    /// `Strong` and `Bounded` (from its clock) and `Eventually`; `Session` sends this client's
    /// latest write to the collection (1, "anything", when it wrote nothing).
    fn guarantee(&self, name: &str, consistency: Consistency) -> u64 {
        match consistency {
            Consistency::Session => self.lock_session().get(name).copied().unwrap_or(1),
            Consistency::Eventually => 1,
            Consistency::Strong | Consistency::Bounded => 0,
        }
    }
}

impl MilvusError {
    fn malformed(call: &'static str, detail: impl ToString) -> Self {
        MilvusError::Malformed {
            call,
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milvus_status_codes_other_than_zero_are_refusals() {
        assert!(check("X", None).is_ok());
        assert!(check("X", Some(&proto::Status::default())).is_ok());
        let refused = check(
            "Search",
            Some(&proto::Status {
                error_code: 1,
                reason: "collection not loaded".into(),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("collection not loaded"),
            "{refused}"
        );
        assert!(check(
            "X",
            Some(&proto::Status {
                code: 100,
                ..Default::default()
            })
        )
        .is_err());
    }

    #[test]
    fn an_alias_is_created_once_then_moved_never_dropped_in_between() {
        assert_eq!(alias_call(None, "b"), Some("CreateAlias"));
        assert_eq!(alias_call(Some("a"), "b"), Some("AlterAlias"));
        assert_eq!(alias_call(Some("b"), "b"), None);
    }

    #[test]
    fn transport_failures_are_retried_and_refusals_are_not() {
        assert!(retryable(tonic::Code::Unavailable));
        assert!(retryable(tonic::Code::DeadlineExceeded));
        assert!(!retryable(tonic::Code::InvalidArgument));
        assert!(!retryable(tonic::Code::PermissionDenied));
    }

    #[test]
    fn backoff_doubles_from_the_first_wait_and_never_exceeds_the_cap() {
        let first = Duration::from_millis(50);
        assert_eq!(backoff(first, 0), first);
        assert_eq!(backoff(first, 1), first * 2);
        assert_eq!(backoff(first, 3), first * 8);
        assert_eq!(backoff(first, 10), MAX_BACKOFF);
        assert_eq!(backoff(first, u32::MAX), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_secs(3600), 0), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }

    fn query_answer(fields: Vec<proto::FieldData>) -> proto::QueryResults {
        proto::QueryResults {
            status: None,
            fields_data: fields,
        }
    }

    #[test]
    fn a_query_answer_pairs_ids_with_slots() {
        let answer = query_answer(vec![
            proto::FieldData::longs("slot", vec![7, -1]),
            proto::FieldData::longs("id", vec![100, 200]),
        ]);
        assert_eq!(
            query_rows(&answer).unwrap(),
            vec![
                QueryRow { id: 100, slot: 7 },
                QueryRow { id: 200, slot: -1 }
            ]
        );
    }

    #[test]
    fn an_empty_query_answer_may_lack_its_columns() {
        assert!(query_rows(&query_answer(Vec::new())).unwrap().is_empty());
        let one_empty = query_answer(vec![proto::FieldData::longs("id", Vec::new())]);
        assert!(query_rows(&one_empty).unwrap().is_empty());
        // A column listed without data, next to an empty one.
        let no_data = query_answer(vec![
            proto::FieldData::longs("id", Vec::new()),
            proto::FieldData {
                r#type: proto::data_type::INT64,
                field_name: "slot".into(),
                field: None,
            },
        ]);
        assert!(query_rows(&no_data).unwrap().is_empty());
    }

    #[test]
    fn a_query_answer_with_rows_but_a_missing_column_is_malformed_not_empty() {
        for answer in [
            query_answer(vec![proto::FieldData::longs("id", vec![1, 2])]),
            query_answer(vec![proto::FieldData::longs("slot", vec![-1])]),
            query_answer(vec![
                proto::FieldData::longs("id", vec![1, 2]),
                proto::FieldData::longs("slot", vec![3]),
            ]),
            query_answer(vec![
                proto::FieldData::longs("id", vec![1]),
                proto::FieldData::float_vectors("slot", 1, vec![0.5]),
            ]),
        ] {
            let e = query_rows(&answer).unwrap_err();
            assert!(
                matches!(e, MilvusError::Malformed { call: "Query", .. }),
                "{e}"
            );
        }
    }

    fn search_answer(scores: Vec<f32>, fields: Vec<proto::FieldData>) -> proto::SearchResults {
        proto::SearchResults {
            status: None,
            results: Some(proto::SearchResultData {
                num_queries: 1,
                top_k: scores.len() as i64,
                fields_data: fields,
                scores,
                ids: None,
                topks: Vec::new(),
            }),
        }
    }

    #[test]
    fn a_search_answer_pairs_slots_with_scores_and_may_be_empty() {
        let answer = search_answer(
            vec![0.25, 0.5],
            vec![proto::FieldData::longs("slot", vec![4, 9])],
        );
        assert_eq!(
            search_rows(&answer).unwrap(),
            vec![
                SearchRow {
                    slot: 4,
                    distance: 0.25
                },
                SearchRow {
                    slot: 9,
                    distance: 0.5
                }
            ]
        );
        let nothing = proto::SearchResults {
            status: None,
            results: None,
        };
        assert!(search_rows(&nothing).unwrap().is_empty());
        assert!(search_rows(&search_answer(Vec::new(), Vec::new()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn search_scores_without_their_slots_are_malformed_not_empty() {
        for answer in [
            search_answer(vec![0.25], Vec::new()),
            search_answer(vec![0.25], vec![proto::FieldData::longs("id", vec![1])]),
            search_answer(
                vec![0.25, 0.5],
                vec![proto::FieldData::longs("slot", vec![4])],
            ),
        ] {
            let e = search_rows(&answer).unwrap_err();
            assert!(
                matches!(e, MilvusError::Malformed { call: "Search", .. }),
                "{e}"
            );
        }
    }

    #[test]
    fn consistency_levels_keep_milvus_numbers() {
        for level in [
            Consistency::Strong,
            Consistency::Session,
            Consistency::Bounded,
            Consistency::Eventually,
        ] {
            assert_eq!(Consistency::from_wire(level.wire() as i32), Some(level));
        }
        assert_eq!(Consistency::Strong.wire() as i32, 0);
        assert_eq!(Consistency::Eventually.wire() as i32, 3);
    }

    #[test]
    fn a_session_read_waits_for_the_latest_write_of_its_collection() {
        let client = MilvusClient::new(&MilvusSettings::default()).unwrap();
        assert_eq!(client.guarantee("a", Consistency::Session), 1);
        client.remember_write("a", 40);
        client.remember_write("a", 30);
        client.remember_write("b", 7);
        assert_eq!(client.guarantee("a", Consistency::Session), 40);
        assert_eq!(client.guarantee("b", Consistency::Session), 7);
        assert_eq!(client.guarantee("a", Consistency::Strong), 0);
    }

    #[test]
    fn a_search_request_carries_its_vector_as_little_endian_floats() {
        let group = proto::PlaceholderGroup {
            placeholders: vec![proto::PlaceholderValue {
                tag: "$0".into(),
                r#type: proto::PLACEHOLDER_FLOAT_VECTOR,
                values: vec![1.0f32.to_le_bytes().to_vec()],
            }],
        };
        let bytes = prost::Message::encode_to_vec(&group);
        let back: proto::PlaceholderGroup = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, group);
    }
}
