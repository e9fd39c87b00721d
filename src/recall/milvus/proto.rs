//! The few protobuf messages of Milvus's gRPC API that the recall index uses, derived by hand with
//! `prost` (no `protoc`, no build script). Field numbers and types are copied from milvus-proto at
//! tag v2.3.5 (`proto/milvus.proto`, `common.proto`, `schema.proto`), the protocol of the Milvus
//! 2.3.5 we test against; fields we never set or read are left out (protobuf skips unknown
//! fields, and an absent field is its default). Names follow the protos'.

#![allow(missing_docs)] // Wire structs: each mirrors the proto message of the same name.

/// `milvus.proto.common.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// Deprecated in 2.3 but still the code 2.3.5 fills: 0 = success.
    #[prost(int32, tag = "1")]
    pub error_code: i32,
    #[prost(string, tag = "2")]
    pub reason: String,
    /// The newer code (0 = success).
    #[prost(int32, tag = "3")]
    pub code: i32,
    #[prost(bool, tag = "4")]
    pub retriable: bool,
    #[prost(string, tag = "5")]
    pub detail: String,
}

/// `milvus.proto.common.KeyValuePair`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValuePair {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

impl KeyValuePair {
    /// A pair from borrowed strings.
    pub fn new(key: &str, value: impl Into<String>) -> KeyValuePair {
        KeyValuePair {
            key: key.to_string(),
            value: value.into(),
        }
    }
}

/// `milvus.proto.common.ConsistencyLevel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConsistencyLevel {
    Strong = 0,
    Session = 1,
    Bounded = 2,
    Eventually = 3,
    Customized = 4,
}

/// `milvus.proto.common.LoadState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LoadState {
    NotExist = 0,
    NotLoad = 1,
    Loading = 2,
    Loaded = 3,
}

/// `milvus.proto.common.IndexState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum IndexState {
    None = 0,
    Unissued = 1,
    InProgress = 2,
    Finished = 3,
    Failed = 4,
    Retry = 5,
}

/// `milvus.proto.common.SegmentState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SegmentState {
    None = 0,
    NotExist = 1,
    Growing = 2,
    Sealed = 3,
    Flushed = 4,
    Flushing = 5,
    Dropped = 6,
    Importing = 7,
}

/// `milvus.proto.common.PlaceholderType` (only the float vector is sent).
pub const PLACEHOLDER_FLOAT_VECTOR: i32 = 101;
/// `milvus.proto.common.DslType.BoolExprV1`.
pub const DSL_BOOL_EXPR_V1: i32 = 1;

/// `milvus.proto.common.PlaceholderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PlaceholderValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(int32, tag = "2")]
    pub r#type: i32,
    /// One little-endian f32 array per query vector.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub values: Vec<Vec<u8>>,
}

/// `milvus.proto.common.PlaceholderGroup` (sent serialized inside `SearchRequest`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PlaceholderGroup {
    #[prost(message, repeated, tag = "1")]
    pub placeholders: Vec<PlaceholderValue>,
}

/// `milvus.proto.schema.DataType` values used here.
pub mod data_type {
    pub const INT64: i32 = 5;
    pub const FLOAT_VECTOR: i32 = 101;
}

/// `milvus.proto.schema.FieldSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FieldSchema {
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(bool, tag = "3")]
    pub is_primary_key: bool,
    #[prost(int32, tag = "5")]
    pub data_type: i32,
    #[prost(message, repeated, tag = "6")]
    pub type_params: Vec<KeyValuePair>,
    #[prost(bool, tag = "8")]
    pub auto_id: bool,
}

/// `milvus.proto.schema.CollectionSchema` (sent serialized inside `CreateCollectionRequest`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CollectionSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub description: String,
    #[prost(message, repeated, tag = "4")]
    pub fields: Vec<FieldSchema>,
}

/// `milvus.proto.schema.LongArray`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LongArray {
    #[prost(int64, repeated, tag = "1")]
    pub data: Vec<i64>,
}

/// `milvus.proto.schema.FloatArray`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FloatArray {
    #[prost(float, repeated, tag = "1")]
    pub data: Vec<f32>,
}

/// `milvus.proto.schema.ScalarField` (only its `long_data` arm).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScalarField {
    #[prost(oneof = "ScalarData", tags = "3")]
    pub data: Option<ScalarData>,
}

/// The arm of `ScalarField.data` used here.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ScalarData {
    #[prost(message, tag = "3")]
    LongData(LongArray),
}

/// `milvus.proto.schema.VectorField` (only its `float_vector` arm).
#[derive(Clone, PartialEq, prost::Message)]
pub struct VectorField {
    #[prost(int64, tag = "1")]
    pub dim: i64,
    #[prost(oneof = "VectorData", tags = "2")]
    pub data: Option<VectorData>,
}

/// The arm of `VectorField.data` used here.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum VectorData {
    #[prost(message, tag = "2")]
    FloatVector(FloatArray),
}

/// `milvus.proto.schema.FieldData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FieldData {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub field_name: String,
    #[prost(oneof = "Field", tags = "3, 4")]
    pub field: Option<Field>,
}

/// `FieldData.field`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Field {
    #[prost(message, tag = "3")]
    Scalars(ScalarField),
    #[prost(message, tag = "4")]
    Vectors(VectorField),
}

impl FieldData {
    /// An int64 column.
    pub fn longs(name: &str, data: Vec<i64>) -> FieldData {
        FieldData {
            r#type: data_type::INT64,
            field_name: name.to_string(),
            field: Some(Field::Scalars(ScalarField {
                data: Some(ScalarData::LongData(LongArray { data })),
            })),
        }
    }

    /// A float-vector column of `dim`, rows concatenated.
    pub fn float_vectors(name: &str, dim: usize, data: Vec<f32>) -> FieldData {
        FieldData {
            r#type: data_type::FLOAT_VECTOR,
            field_name: name.to_string(),
            field: Some(Field::Vectors(VectorField {
                dim: dim as i64,
                data: Some(VectorData::FloatVector(FloatArray { data })),
            })),
        }
    }

    /// The int64 values of a scalar column (`None` for another kind of column).
    pub fn as_longs(&self) -> Option<&[i64]> {
        match &self.field {
            Some(Field::Scalars(ScalarField {
                data: Some(ScalarData::LongData(l)),
            })) => Some(&l.data),
            _ => None,
        }
    }
}

/// `milvus.proto.schema.IDs` (int64 keys only: our primary key is an int64).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ids {
    #[prost(oneof = "IdField", tags = "1")]
    pub id_field: Option<IdField>,
}

/// `IDs.id_field`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum IdField {
    #[prost(message, tag = "1")]
    IntId(LongArray),
}

/// `milvus.proto.schema.SearchResultData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SearchResultData {
    #[prost(int64, tag = "1")]
    pub num_queries: i64,
    #[prost(int64, tag = "2")]
    pub top_k: i64,
    #[prost(message, repeated, tag = "3")]
    pub fields_data: Vec<FieldData>,
    #[prost(float, repeated, tag = "4")]
    pub scores: Vec<f32>,
    #[prost(message, optional, tag = "5")]
    pub ids: Option<Ids>,
    #[prost(int64, repeated, tag = "6")]
    pub topks: Vec<i64>,
}

// ---- milvus.proto.milvus ----

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateCollectionRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    /// A serialized [`CollectionSchema`].
    #[prost(bytes = "vec", tag = "4")]
    pub schema: Vec<u8>,
    #[prost(int32, tag = "5")]
    pub shards_num: i32,
    #[prost(enumeration = "ConsistencyLevel", tag = "6")]
    pub consistency_level: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DropCollectionRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HasCollectionRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(bool, tag = "2")]
    pub value: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ShowCollectionsRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ShowCollectionsResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(string, repeated, tag = "2")]
    pub collection_names: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DescribeCollectionRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DescribeCollectionResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<CollectionSchema>,
    #[prost(string, repeated, tag = "9")]
    pub aliases: Vec<String>,
    #[prost(enumeration = "ConsistencyLevel", tag = "11")]
    pub consistency_level: i32,
    #[prost(string, tag = "12")]
    pub collection_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LoadCollectionRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    #[prost(int32, tag = "4")]
    pub replica_number: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetLoadStateRequest {
    #[prost(string, tag = "2")]
    pub collection_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetLoadStateResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(enumeration = "LoadState", tag = "2")]
    pub state: i32,
}

/// `CreateAliasRequest` and `AlterAliasRequest` (same fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AliasRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    #[prost(string, tag = "4")]
    pub alias: String,
}

/// `DropAliasRequest` and `DescribeAliasRequest` (same fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AliasNameRequest {
    #[prost(string, tag = "3")]
    pub alias: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateIndexRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    #[prost(string, tag = "4")]
    pub field_name: String,
    /// `index_type`, `metric_type` and `params` (a JSON object of the index's parameters).
    #[prost(message, repeated, tag = "5")]
    pub extra_params: Vec<KeyValuePair>,
    #[prost(string, tag = "6")]
    pub index_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DescribeIndexRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    #[prost(string, tag = "4")]
    pub field_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IndexDescription {
    #[prost(string, tag = "1")]
    pub index_name: String,
    #[prost(message, repeated, tag = "3")]
    pub params: Vec<KeyValuePair>,
    #[prost(string, tag = "4")]
    pub field_name: String,
    #[prost(int64, tag = "5")]
    pub indexed_rows: i64,
    #[prost(int64, tag = "6")]
    pub total_rows: i64,
    #[prost(enumeration = "IndexState", tag = "7")]
    pub state: i32,
    #[prost(string, tag = "8")]
    pub index_state_fail_reason: String,
    #[prost(int64, tag = "9")]
    pub pending_index_rows: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DescribeIndexResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, repeated, tag = "2")]
    pub index_descriptions: Vec<IndexDescription>,
}

/// `InsertRequest` and `UpsertRequest` (same fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InsertRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    #[prost(message, repeated, tag = "5")]
    pub fields_data: Vec<FieldData>,
    #[prost(uint32, tag = "7")]
    pub num_rows: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    #[prost(string, tag = "5")]
    pub expr: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MutationResult {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, optional, tag = "2")]
    pub ids: Option<Ids>,
    #[prost(int64, tag = "6")]
    pub insert_cnt: i64,
    #[prost(int64, tag = "7")]
    pub delete_cnt: i64,
    #[prost(int64, tag = "8")]
    pub upsert_cnt: i64,
    #[prost(uint64, tag = "9")]
    pub timestamp: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SearchRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    #[prost(string, tag = "5")]
    pub dsl: String,
    /// A serialized [`PlaceholderGroup`].
    #[prost(bytes = "vec", tag = "6")]
    pub placeholder_group: Vec<u8>,
    #[prost(int32, tag = "7")]
    pub dsl_type: i32,
    #[prost(string, repeated, tag = "8")]
    pub output_fields: Vec<String>,
    /// `anns_field`, `topk`, `metric_type`, `params` (JSON, e.g. `{"ef": 200}`), `round_decimal`.
    #[prost(message, repeated, tag = "9")]
    pub search_params: Vec<KeyValuePair>,
    #[prost(uint64, tag = "11")]
    pub guarantee_timestamp: u64,
    #[prost(int64, tag = "12")]
    pub nq: i64,
    #[prost(enumeration = "ConsistencyLevel", tag = "14")]
    pub consistency_level: i32,
    #[prost(bool, tag = "15")]
    pub use_default_consistency: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SearchResults {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, optional, tag = "2")]
    pub results: Option<SearchResultData>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FlushRequest {
    #[prost(string, repeated, tag = "3")]
    pub collection_names: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FlushResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    /// The flushed segments per collection.
    #[prost(map = "string, message", tag = "3")]
    pub coll_seg_ids: std::collections::HashMap<String, LongArray>,
    /// The hybrid timestamp to ask `GetFlushState` about, per collection.
    #[prost(map = "string, uint64", tag = "6")]
    pub coll_flush_ts: std::collections::HashMap<String, u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetFlushStateRequest {
    #[prost(int64, repeated, tag = "1")]
    pub segment_ids: Vec<i64>,
    #[prost(uint64, tag = "2")]
    pub flush_ts: u64,
    #[prost(string, tag = "4")]
    pub collection_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetFlushStateResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(bool, tag = "2")]
    pub flushed: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
    #[prost(string, tag = "4")]
    pub expr: String,
    #[prost(string, repeated, tag = "5")]
    pub output_fields: Vec<String>,
    #[prost(uint64, tag = "8")]
    pub guarantee_timestamp: u64,
    /// `limit`, among others.
    #[prost(message, repeated, tag = "9")]
    pub query_params: Vec<KeyValuePair>,
    #[prost(enumeration = "ConsistencyLevel", tag = "11")]
    pub consistency_level: i32,
    #[prost(bool, tag = "12")]
    pub use_default_consistency: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResults {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, repeated, tag = "2")]
    pub fields_data: Vec<FieldData>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetQuerySegmentInfoRequest {
    #[prost(string, tag = "3")]
    pub collection_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QuerySegmentInfo {
    #[prost(int64, tag = "1")]
    pub segment_id: i64,
    #[prost(int64, tag = "5")]
    pub num_rows: i64,
    #[prost(string, tag = "6")]
    pub index_name: String,
    #[prost(int64, tag = "7")]
    pub index_id: i64,
    #[prost(enumeration = "SegmentState", tag = "9")]
    pub state: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetQuerySegmentInfoResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, repeated, tag = "2")]
    pub infos: Vec<QuerySegmentInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DescribeAliasResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(string, tag = "3")]
    pub alias: String,
    #[prost(string, tag = "4")]
    pub collection: String,
}
