//! Tensors as nested JSON lists: parsing with errors that name the field and the place, and writing
//! back with non-finite values as strings.
//!
//! JSON has no NaN or infinity (RFC 8259 §6) and serde_json would write them as `null`, which reads
//! like "missing". We write `"nan"`, `"inf"` and `"-inf"` instead, and every response that contains
//! one says so with `"non_finite": true`. Inputs must be finite numbers: strings, booleans and nulls
//! are rejected.

use ndarray::{Array1, Array2, ArrayD, IxDyn};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{check_elements, LayerError, LayerLimits};

/// Deepest nesting accepted; every layer uses rank ≤ 4, and a bound keeps the recursion shallow.
const MAX_RANK: usize = 8;

/// An `f64` tensor that serialises as nested lists, with non-finite elements as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor(pub ArrayD<f64>);

/// An `f64` scalar that serialises as a number, or as `"nan"`, `"inf"`, `"-inf"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl Tensor {
    /// Whether every element is finite.
    pub fn is_finite(&self) -> bool {
        self.0.iter().all(|x| x.is_finite())
    }

    /// The shape, as a vector.
    pub fn shape(&self) -> Vec<usize> {
        self.0.shape().to_vec()
    }
}

impl<D: ndarray::Dimension> From<ndarray::Array<f64, D>> for Tensor {
    fn from(a: ndarray::Array<f64, D>) -> Self {
        Tensor(a.into_dyn())
    }
}

impl Num {
    /// Whether the value is finite.
    pub fn is_finite(&self) -> bool {
        self.0.is_finite()
    }
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_finite() {
            s.serialize_f64(x)
        } else if x.is_nan() {
            s.serialize_str("nan")
        } else if x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

/// One level of a tensor being written: `dims` of the remaining axes over `data` in row-major order.
struct Nested<'a> {
    dims: &'a [usize],
    data: &'a [f64],
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.dims.split_first() {
            None => Num(self.data.first().copied().unwrap_or(f64::NAN)).serialize(s),
            Some((&n, rest)) => {
                let chunk: usize = rest.iter().product();
                let mut seq = s.serialize_seq(Some(n))?;
                for i in 0..n {
                    let data = self.data.get(i * chunk..(i + 1) * chunk).unwrap_or(&[]);
                    seq.serialize_element(&Nested { dims: rest, data })?;
                }
                seq.end()
            }
        }
    }
}

impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Row-major order whatever the memory layout of the array.
        let data: Vec<f64> = self.0.iter().copied().collect();
        Nested {
            dims: self.0.shape(),
            data: &data,
        }
        .serialize(s)
    }
}

/// What a JSON value is, for error messages.
fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parses a nested list into a tensor of any rank (a bare number is rank 0).
///
/// **Errors**: [`LayerError::Ragged`] when siblings differ in length, [`LayerError::NotANumber`]
/// when an element is not a finite number (or a list stands where a number belongs),
/// [`LayerError::Rank`] past rank 8, [`LayerError::TooLarge`] past `max_elements` (checked before
/// anything is allocated).
pub fn from_json(
    field: &str,
    value: &Value,
    limits: &LayerLimits,
) -> Result<ArrayD<f64>, LayerError> {
    // The shape is read along the first element at every depth; the walk then checks every sibling.
    let mut shape = Vec::new();
    let mut cur = value;
    while let Value::Array(items) = cur {
        shape.push(items.len());
        if shape.len() > MAX_RANK {
            return Err(LayerError::Rank {
                field: field.to_string(),
                expected: format!("at most {MAX_RANK}"),
                got: shape.len(),
                shape,
            });
        }
        match items.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    let count = shape
        .iter()
        .fold(1u128, |acc, &n| acc.saturating_mul(n as u128));
    check_elements(field, count, limits)?;
    let mut data = Vec::with_capacity(count as usize);
    walk(field, value, &shape, &mut field.to_string(), &mut data)?;
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| LayerError::OutOfRange {
        field: field.to_string(),
        message: format!("could not build a tensor of shape {shape:?}: {e}"),
    })
}

fn walk(
    field: &str,
    v: &Value,
    shape: &[usize],
    path: &mut String,
    out: &mut Vec<f64>,
) -> Result<(), LayerError> {
    match (shape.split_first(), v) {
        (None, Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => {
                out.push(x);
                Ok(())
            }
            _ => Err(LayerError::NotANumber {
                field: field.to_string(),
                path: path.clone(),
                found: format!("{n}, which does not fit a finite f64"),
                expected: "a finite number".to_string(),
            }),
        },
        (None, other) => Err(LayerError::NotANumber {
            field: field.to_string(),
            path: path.clone(),
            found: describe(other).to_string(),
            expected: "a number".to_string(),
        }),
        (Some((&n, rest)), Value::Array(items)) => {
            if items.len() != n {
                return Err(LayerError::Ragged {
                    field: field.to_string(),
                    path: path.clone(),
                    got: items.len(),
                    expected: n,
                });
            }
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(field, item, rest, path, out)?;
                path.truncate(len);
            }
            Ok(())
        }
        (Some((&n, _)), other) => Err(LayerError::NotANumber {
            field: field.to_string(),
            path: path.clone(),
            found: describe(other).to_string(),
            expected: format!("a list of {n} elements"),
        }),
    }
}

/// A rank error for `field`.
pub(crate) fn rank_error(field: &str, expected: &str, shape: &[usize]) -> LayerError {
    LayerError::Rank {
        field: field.to_string(),
        expected: expected.to_string(),
        got: shape.len(),
        shape: shape.to_vec(),
    }
}

/// Parses a rank-1 tensor.
pub(crate) fn vector(
    field: &str,
    value: &Value,
    limits: &LayerLimits,
) -> Result<Array1<f64>, LayerError> {
    let a = from_json(field, value, limits)?;
    let shape = a.shape().to_vec();
    a.into_dimensionality()
        .map_err(|_| rank_error(field, "1", &shape))
}

/// Parses a rank-2 tensor.
pub(crate) fn matrix(
    field: &str,
    value: &Value,
    limits: &LayerLimits,
) -> Result<Array2<f64>, LayerError> {
    let a = from_json(field, value, limits)?;
    let shape = a.shape().to_vec();
    a.into_dimensionality()
        .map_err(|_| rank_error(field, "2", &shape))
}

/// Parses an optional vector that must have length `n`, or returns `default` filled to length `n`.
pub(crate) fn vector_or(
    field: &str,
    value: Option<&Value>,
    n: usize,
    default: f64,
    limits: &LayerLimits,
) -> Result<Array1<f64>, LayerError> {
    match value {
        None => Ok(Array1::from_elem(n, default)),
        Some(v) => {
            let a = vector(field, v, limits)?;
            expect_shape(field, a.shape(), &[n])?;
            Ok(a)
        }
    }
}

/// Fails with a [`LayerError::Shape`] naming both shapes unless `got == expected`.
pub(crate) fn expect_shape(
    field: &str,
    got: &[usize],
    expected: &[usize],
) -> Result<(), LayerError> {
    if got != expected {
        return Err(LayerError::Shape {
            field: field.to_string(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lim() -> LayerLimits {
        LayerLimits::default()
    }

    #[test]
    fn nested_lists_round_trip() {
        let v = json!([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let a = from_json("x", &v, &lim()).unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        assert_eq!(serde_json::to_value(Tensor(a)).unwrap(), v);
    }

    #[test]
    fn ragged_rows_are_named_by_index() {
        let e =
            from_json("x", &json!([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3]]), &lim()).unwrap_err();
        assert_eq!(e.to_string(), "x: x[2] has 3 elements, expected 4");
    }

    #[test]
    fn strings_are_not_numbers() {
        let e = from_json("x", &json!([[1, "a"]]), &lim()).unwrap_err();
        assert_eq!(e.to_string(), "x: x[0][1] is a string, expected a number");
    }

    #[test]
    fn non_finite_values_are_written_as_strings() {
        let t = Tensor(
            ArrayD::from_shape_vec(
                IxDyn(&[3]),
                vec![f64::INFINITY, f64::NEG_INFINITY, f64::NAN],
            )
            .unwrap(),
        );
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"["inf","-inf","nan"]"#
        );
    }

    #[test]
    fn empty_axes_serialise_as_empty_lists() {
        let t = Tensor(ArrayD::zeros(IxDyn(&[2, 0])));
        assert_eq!(serde_json::to_string(&t).unwrap(), "[[],[]]");
    }
}
