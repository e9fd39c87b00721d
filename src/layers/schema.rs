//! OpenAPI schemas of the tensors the layers read and write.
//!
//! Requests keep tensors as `serde_json::Value` so that [`super::tensor`] can name the place of a
//! ragged row or a stray string; these marker types give each such field its documented shape
//! instead (`#[schema(value_type = Matrix)]`). A tensor of rank r is r nested arrays around its
//! elements. Input elements are JSON numbers; output elements may also be the strings `"nan"`,
//! `"inf"` and `"-inf"` ([`super::Num`]). Ranks that a field accepts in several forms are an
//! `anyOf`, not a `oneOf`: an empty array is a valid tensor of every rank.
//!
//! A schema must never be stricter than the parser (the API fuzzer sends schema-invalid bodies
//! and expects a 400); cross-field shape rules, which it cannot express, stay in the descriptions.

use std::borrow::Cow;
use std::ops::RangeInclusive;

use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::Num;

/// What a tensor holds.
#[derive(Debug, Clone, Copy)]
enum Element {
    /// A JSON number: every input element.
    Number,
    /// A [`Num`]: every output element, which may be `"nan"`, `"inf"` or `"-inf"`.
    Num,
}

impl Element {
    /// The schema of one element.
    fn schema(self) -> RefOr<Schema> {
        match self {
            Element::Number => ObjectBuilder::new().schema_type(Type::Number).into(),
            Element::Num => Ref::from_schema_name(Num::name()).into(),
        }
    }

    /// Adds the components the element's schema refers to.
    fn components(self, schemas: &mut Vec<(String, RefOr<Schema>)>) {
        if let Element::Num = self {
            schemas.push((Num::name().into_owned(), Num::schema()));
        }
    }
}

/// `rank` nested arrays around `element`.
fn nested(rank: usize, element: Element) -> RefOr<Schema> {
    (0..rank).fold(element.schema(), |inner, _| {
        ArrayBuilder::new().items(inner).into()
    })
}

/// A tensor of any rank in `ranks`, described.
fn tensor(ranks: RangeInclusive<usize>, element: Element, description: &str) -> RefOr<Schema> {
    match (*ranks.start(), *ranks.end()) {
        (lo, hi) if lo == hi && lo > 0 => ArrayBuilder::new()
            .items(nested(lo - 1, element))
            .description(Some(description))
            .into(),
        _ => ranks
            .fold(AnyOfBuilder::new(), |any, rank| {
                any.item(nested(rank, element))
            })
            .description(Some(description))
            .into(),
    }
}

/// An integer from 0 to 2⁶⁴ − 1: a `u64` field. utoipa's own schema for `u64` says
/// `format: int64`, which clients (and the API fuzzer) read as at most 2⁶³ − 1.
#[derive(Debug, Clone, Copy)]
pub struct U64;

impl PartialSchema for U64 {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0usize))
            .maximum(Some(usize::try_from(u64::MAX).unwrap_or(usize::MAX)))
            .description(Some("An integer from 0 to 2⁶⁴ − 1."))
            .into()
    }
}

impl ToSchema for U64 {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("U64")
    }
}

impl PartialSchema for Num {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Element::Number.schema())
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["nan", "inf", "-inf"])),
            )
            .description(Some(
                "A number, or the string \"nan\", \"inf\" or \"-inf\" for a result that is not \
                 finite (JSON has no such numbers; the response then says \"non_finite\": true).",
            ))
            .into()
    }
}

impl ToSchema for Num {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Num")
    }
}

/// Declares types that exist only for their schema: tensors of the given ranks and elements.
macro_rules! tensor_schemas {
    ($($name:ident: $ranks:expr, $element:ident, $doc:literal;)*) => {
        $(
            #[doc = $doc]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    tensor($ranks, Element::$element, $doc)
                }
            }

            impl ToSchema for $name {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($name))
                }

                fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                    Element::$element.components(schemas);
                }
            }
        )*
    };
}

tensor_schemas! {
    Vector: 1..=1, Number, "A tensor of rank 1: a list of numbers.";
    Matrix: 2..=2, Number, "A tensor of rank 2: a list of rows of equal length (row-major).";
    Rank2Or3: 2..=3, Number, "A tensor of rank 2 or 3 as nested lists of equal length.";
    Rank1Or2: 1..=2, Number, "A tensor of rank 1 or 2 as nested lists of equal length.";
    Rank1To8: 1..=8, Number, "A tensor of rank 1 to 8 as nested lists of equal length.";
    Rank0To8: 0..=8, Number, "A tensor of rank 0 (a bare number) to 8 as nested lists of equal length.";
    NumVector: 1..=1, Num, "A tensor of rank 1 whose elements are numbers or \"nan\", \"inf\", \"-inf\".";
    NumMatrix: 2..=2, Num, "A tensor of rank 2 (rows of equal length) whose elements are numbers or \"nan\", \"inf\", \"-inf\".";
    NumRank2Or3: 2..=3, Num, "A tensor of rank 2 or 3 whose elements are numbers or \"nan\", \"inf\", \"-inf\".";
    NumRank0To8: 0..=8, Num, "A tensor of rank 0 (a bare value) to 8 whose elements are numbers or \"nan\", \"inf\", \"-inf\".";
    NumRank1To8: 1..=8, Num, "A tensor of rank 1 to 8 whose elements are numbers or \"nan\", \"inf\", \"-inf\".";
}
