//! Deserialisers that prefix serde's error with the field name.
//!
//! serde_json reports an unknown enum variant or a wrong scalar type without saying which field it
//! was ("unknown variant `x`, expected `train` or `eval`"); the HTTP layer must name the field. Each
//! function here deserialises any `T` (including `Option<…>`) and rewrites the error as
//! `"<field>: <serde's message>"`, which [`super::parse_request`] then reads back as the field.
//! Used as `#[serde(default, deserialize_with = "named::mode")]`.

macro_rules! named_fields {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("Deserialises the `", stringify!($name), "` field, naming it in errors.")]
            pub(crate) fn $name<'de, D, T>(d: D) -> Result<T, D::Error>
            where
                D: serde::Deserializer<'de>,
                T: serde::Deserialize<'de>,
            {
                T::deserialize(d).map_err(|e| {
                    <D::Error as serde::de::Error>::custom(format!(
                        "{}: {}",
                        stringify!($name),
                        e
                    ))
                })
            }
        )*
    };
}

named_fields!(
    mode,
    variant,
    activation,
    output_activation,
    laplacian,
    eps,
    momentum,
    p,
    seed,
    normalized_dims,
    steps,
    w0,
    indices,
    tolerance,
);
