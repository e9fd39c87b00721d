//! The diagnostic layers, as a specification: golden fixtures from PyTorch and NumPy
//! (scripts/make_layer_fixtures.py), one test per behavioural rule, one per rejected input.

mod common;

use common::assert_close;
use fmrecall::layers::{self, LayerError, LayerLimits};
use serde_json::{json, Value};

/// Runs the layer named `layer` on a JSON body the way the HTTP handler will: parse, run, serialise.
fn run_with(layer: &str, body: &Value, limits: &LayerLimits) -> Result<Value, LayerError> {
    let bytes = serde_json::to_vec(body).expect("test bodies serialise");
    fn go<Q: serde::de::DeserializeOwned, R: serde::Serialize>(
        bytes: &[u8],
        limits: &LayerLimits,
        f: fn(&Q, &LayerLimits) -> Result<R, LayerError>,
    ) -> Result<Value, LayerError> {
        let req: Q = layers::parse_request(bytes)?;
        let resp = f(&req, limits)?;
        // The response must always be valid JSON, whatever the numbers.
        let text = serde_json::to_string(&resp).expect("responses serialise");
        Ok(serde_json::from_str(&text).expect("responses are valid JSON"))
    }
    match layer {
        "batchnorm" => go(&bytes, limits, layers::run_batchnorm),
        "layernorm" => go(&bytes, limits, layers::run_layernorm),
        "dropout" => go(&bytes, limits, layers::run_dropout),
        "rnn" => go(&bytes, limits, layers::run_rnn),
        "lstm" => go(&bytes, limits, layers::run_lstm),
        "gcn" => go(&bytes, limits, layers::run_gcn),
        "gnn" => go(&bytes, limits, layers::run_gnn),
        "fm" => go(&bytes, limits, layers::run_fm),
        "stability" => go(&bytes, limits, layers::run_stability),
        "smoothing" => go(&bytes, limits, layers::run_smoothing),
        other => panic!("unknown layer {other}"),
    }
}

fn run(layer: &str, body: Value) -> Result<Value, LayerError> {
    run_with(layer, &body, &LayerLimits::default())
}

fn ok(layer: &str, body: Value) -> Value {
    run(layer, body).unwrap_or_else(|e| panic!("{layer} failed: {e}"))
}

fn err(layer: &str, body: Value) -> LayerError {
    match run(layer, body) {
        Ok(v) => panic!("{layer} accepted a bad body and returned {v}"),
        Err(e) => e,
    }
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

#[test]
fn every_fixture_matches_its_torch_or_numpy_reference() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/layers");
    let mut seen = 0;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let layer = fixture["layer"].as_str().unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let got = run(layer, fixture["request"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_close(&name, &got, &fixture["expected"]);
        seen += 1;
    }
    assert!(seen >= 19, "only {seen} fixtures found");
}

// ---- batchnorm and layernorm ----

#[test]
fn batchnorm_on_b_l_c_input_gives_one_mean_per_channel() {
    let x: Vec<Vec<Vec<f64>>> = (0..2)
        .map(|b| {
            (0..3)
                .map(|l| (0..4).map(|c| (b * 12 + l * 4 + c) as f64).collect())
                .collect()
        })
        .collect();
    let out = ok("batchnorm", json!({"x": x}));
    assert_eq!(floats(&out["mean"]), vec![10.0, 11.0, 12.0, 13.0]);
    assert_eq!(floats(&out["running_mean"]).len(), 4);
}

#[test]
fn batchnorm_eval_uses_running_statistics_and_changes_nothing() {
    let out = ok(
        "batchnorm",
        json!({"x": [[1.0, 2.0]], "mode": "eval", "running_mean": [1.0, 0.0], "running_var": [4.0, 1.0], "eps": 0.0}),
    );
    assert_eq!(floats(&out["y"]), vec![0.0, 2.0]);
    assert_eq!(floats(&out["running_mean"]), vec![1.0, 0.0]);
    assert_eq!(floats(&out["running_var"]), vec![4.0, 1.0]);
}

#[test]
fn batchnorm_train_with_one_value_per_channel_is_rejected() {
    assert_eq!(err("batchnorm", json!({"x": [[1.0, 2.0]]})).field(), "x");
}

#[test]
fn layernorm_on_b_c_input_gives_one_mean_per_sample() {
    let out = ok(
        "layernorm",
        json!({"x": [[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]]}),
    );
    assert_eq!(floats(&out["mean"]), vec![2.0, 6.0]);
}

#[test]
fn layernorm_normalized_dims_other_than_one_or_two_is_rejected() {
    let e = err(
        "layernorm",
        json!({"x": [[1.0, 2.0]], "normalized_dims": 3}),
    );
    assert_eq!(e.field(), "normalized_dims");
}

// ---- dropout ----

fn big_input() -> Vec<Vec<f64>> {
    vec![vec![1.0; 200]; 100]
}

#[test]
fn dropout_eval_is_the_identity() {
    let x = json!([[1.5, -2.0], [0.0, 3.0]]);
    let out = ok("dropout", json!({"x": x, "p": 0.4, "mode": "eval"}));
    assert_eq!(out["y"], x);
    assert_eq!(out["mask"], Value::Null);
}

#[test]
fn dropout_train_drops_about_p_of_a_large_input() {
    let out = ok("dropout", json!({"x": big_input(), "p": 0.3, "seed": 11}));
    let mask = floats(&out["mask"]);
    let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / mask.len() as f64;
    // 20 000 Bernoulli(0.3) draws: the standard deviation of the rate is 0.0032.
    assert!((dropped - 0.3).abs() < 0.02, "drop rate {dropped}");
}

#[test]
fn dropout_survivors_are_scaled_by_one_over_keep_probability() {
    let out = ok("dropout", json!({"x": big_input(), "p": 0.2, "seed": 3}));
    for (y, m) in floats(&out["y"]).iter().zip(floats(&out["mask"])) {
        assert!((y - m * 1.25).abs() < 1e-12);
    }
}

#[test]
fn dropout_same_seed_gives_the_same_mask_and_another_seed_another() {
    let a = ok("dropout", json!({"x": big_input(), "p": 0.5, "seed": 42}));
    let b = ok("dropout", json!({"x": big_input(), "p": 0.5, "seed": 42}));
    let c = ok("dropout", json!({"x": big_input(), "p": 0.5, "seed": 43}));
    assert_eq!(a["mask"], b["mask"]);
    assert_ne!(a["mask"], c["mask"]);
}

#[test]
fn dropout_classic_variant_leaves_training_unscaled_and_scales_inference_by_keep_probability() {
    let train = ok(
        "dropout",
        json!({"x": big_input(), "p": 0.25, "variant": "classic", "seed": 5}),
    );
    assert_eq!(floats(&train["y"]), floats(&train["mask"]));
    let eval = ok(
        "dropout",
        json!({"x": [[2.0, 4.0]], "p": 0.25, "variant": "classic", "mode": "eval"}),
    );
    assert_eq!(floats(&eval["y"]), vec![1.5, 3.0]);
}

#[test]
fn dropout_p_outside_zero_one_is_rejected() {
    for p in [1.0, -0.1, 1.5] {
        assert_eq!(err("dropout", json!({"x": [1.0], "p": p})).field(), "p");
    }
}

// ---- stability ----

fn eye(n: usize, s: f64) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| (0..n).map(|j| if i == j { s } else { 0.0 }).collect())
        .collect()
}

#[test]
fn stability_half_identity_is_vanishing() {
    let out = ok("stability", json!({"w": eye(3, 0.5), "steps": 50}));
    assert_eq!(out["verdict"], "vanishing");
    assert_eq!(out["step"], 20); // 0.5^20 ≈ 9.5e-7 < 1e-6 ≤ 0.5^19
    assert!((out["spectral_radius"].as_f64().unwrap() - 0.5).abs() < 1e-12);
}

#[test]
fn stability_double_identity_is_exploding() {
    let out = ok("stability", json!({"w": eye(3, 2.0), "steps": 50}));
    assert_eq!(out["verdict"], "exploding");
    assert_eq!(out["step"], 20); // 2^20 ≈ 1.05e6 > 1e6 ≥ 2^19
}

#[test]
fn stability_rotation_is_stable_with_radius_one() {
    let (c, s) = (0.8f64, 0.6f64);
    let out = ok("stability", json!({"w": [[c, -s], [s, c]], "steps": 500}));
    assert_eq!(out["verdict"], "stable");
    assert_eq!(out["step"], Value::Null);
    assert_eq!(out["asymptotic_verdict"], "stable");
    assert!((out["spectral_radius"].as_f64().unwrap() - 1.0).abs() < 1e-12);
}

#[test]
fn stability_overflowing_norms_are_reported_as_inf_not_as_an_error() {
    let out = ok("stability", json!({"w": eye(2, 1e200), "steps": 5}));
    assert_eq!(out["non_finite"], true);
    assert!((out["norms"][0].as_f64().unwrap() / 1e200 - 1.0).abs() < 1e-12);
    assert_eq!(out["norms"][1], "inf");
    assert!((out["log10_norms"][4].as_f64().unwrap() - 1000.0).abs() < 1e-9);
    assert_eq!(out["verdict"], "exploding");
}

#[test]
fn stability_nilpotent_matrix_vanishes_to_exact_zero() {
    let out = ok(
        "stability",
        json!({"w": [[0.0, 1.0], [0.0, 0.0]], "steps": 3}),
    );
    assert_eq!(out["verdict"], "vanishing");
    assert_eq!(out["step"], 2);
    assert_eq!(out["spectral_radius"].as_f64().unwrap(), 0.0);
    assert_eq!(out["log10_norms"][1], "-inf");
}

// ---- smoothing ----

#[test]
fn smoothing_on_a_connected_graph_is_over_smoothed() {
    // A path 0 – 1 – 2 – 3 with distinct features.
    let a = json!([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]]);
    let out = ok(
        "smoothing",
        json!({"a": a, "x": [[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [-1.0, 5.0]], "steps": 100}),
    );
    assert_eq!(out["verdict"], "over-smoothed");
    let step = out["step"].as_u64().unwrap();
    let spread = floats(&out["spread"]);
    assert!(spread[step as usize - 1] < 1e-3 * out["initial_spread"].as_f64().unwrap());
}

#[test]
fn smoothing_on_a_graph_without_edges_is_not_over_smoothed() {
    let out = ok(
        "smoothing",
        json!({"a": [[0, 0], [0, 0]], "x": [[1.0], [2.0]], "steps": 10}),
    );
    assert_eq!(out["verdict"], "not-over-smoothed");
    assert_eq!(out["step"], Value::Null);
}

// ---- fm ----

#[test]
fn fm_both_ways_agree_and_count_their_operations() {
    let out = ok(
        "fm",
        json!({"w0": 0.5, "w": [0.1, 0.2, 0.3], "v": [[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]],
               "indices": [0, 1, 2], "values": [1.0, 2.0, 1.0]}),
    );
    // 0.5 + (0.1 + 0.4 + 0.3) + <v0,v1>·2 + <v0,v2>·1 + <v1,v2>·2 = 1.3 + 1 + 0 + 2 = 4.3
    assert!((out["score_naive"].as_f64().unwrap() - 4.3).abs() < 1e-5);
    assert!((out["score_fast"].as_f64().unwrap() - 4.3).abs() < 1e-5);
    assert_eq!(out["ops_naive"]["multiply_adds"], 3 + 3 * 3);
    assert_eq!(out["ops_fast"]["multiply_adds"], 3 + 2 * 3 * 2 + 2);
}

#[test]
fn fm_reference_is_accumulated_in_f64_and_the_fast_side_keeps_f32_accuracy() {
    // The size at which an f32 pairwise sum was off by 1.3e-5 relative (n = 2000, k = 32, m = 600).
    let model = common::random_model(2000, 32, 7);
    let (idx, val) = common::random_row(2000, 600, &mut fmrecall::rng::Rng::new(8));
    let wide = |x: &f32| f64::from(*x);
    let out = ok(
        "fm",
        json!({"w0": f64::from(model.w0), "w": model.w.iter().map(wide).collect::<Vec<_>>(),
               "v": model.v.rows().into_iter().map(|r| r.iter().map(wide).collect()).collect::<Vec<Vec<f64>>>(),
               "indices": idx, "values": val.iter().map(wide).collect::<Vec<_>>()}),
    );
    // Independent of the code under test: Rendle's identity, in f64 on the same (f32) parameters.
    let k = model.v.ncols();
    let (mut s, mut q) = (vec![0f64; k], vec![0f64; k]);
    let mut want = f64::from(model.w0);
    for (&j, &x) in idx.iter().zip(&val) {
        let x = f64::from(x);
        want += f64::from(model.w[j as usize]) * x;
        for (f, &v) in model.v.row(j as usize).iter().enumerate() {
            let vx = f64::from(v) * x;
            s[f] += vx;
            q[f] += vx * vx;
        }
    }
    want += 0.5 * s.iter().zip(&q).map(|(s, q)| s * s - q).sum::<f64>();
    let rel = |got: &Value| (got.as_f64().unwrap() - want).abs() / want.abs();
    assert!(
        rel(&out["score_naive"]) < 1e-12,
        "reference {} vs f64 {want}",
        out["score_naive"]
    );
    // f32 over 600 features and k = 32: 1.1e-6 relative with these seeds.
    assert!(
        rel(&out["score_fast"]) < 2e-6,
        "O(k·m) in f32 {} vs f64 {want}",
        out["score_fast"]
    );
    let diff = out["abs_diff"].as_f64().unwrap();
    assert!((diff - (out["score_fast"].as_f64().unwrap() - want).abs()).abs() < 1e-9 * want.abs());
}

#[test]
fn fm_index_out_of_range_is_rejected() {
    let e = err(
        "fm",
        json!({"w0": 0.0, "w": [0.1], "v": [[1.0]], "indices": [3], "values": [1.0]}),
    );
    assert_eq!(e.field(), "indices");
}

// ---- non-finite results ----

#[test]
fn non_finite_results_are_written_as_strings_and_flagged() {
    // 1e300 · 1e300 overflows in the GNN's X·W.
    let out = ok(
        "gnn",
        json!({"a": [[0.0]], "x": [[1e300]], "w": [[1e300]], "activation": "identity"}),
    );
    assert_eq!(out["y"], json!([["inf"]]));
    assert_eq!(out["non_finite"], true);
}

// ---- rejected inputs name their field ----

fn rnn_body(w: Value) -> Value {
    json!({"x": [[1.0, 2.0, 3.0]], "w": w, "b": vec![0.0; 4], "v": [[1.0, 1.0, 1.0, 1.0]], "c": [0.0]})
}

#[test]
fn shape_mismatch_names_the_field_and_both_shapes() {
    let e = err("rnn", rnn_body(json!(vec![vec![0.0; 6]; 4])));
    assert_eq!(e.field(), "w");
    assert_eq!(e.to_string(), "w: expected shape [4, 7], got [4, 6]");
}

#[test]
fn ragged_nested_arrays_name_the_offending_index() {
    let mut rows = vec![vec![0.0; 7]; 4];
    rows[2].pop();
    let e = err("rnn", rnn_body(json!(rows)));
    assert_eq!(e.field(), "w");
    assert_eq!(e.to_string(), "w: w[2] has 6 elements, expected 7");
}

#[test]
fn non_numbers_in_a_tensor_are_rejected() {
    let e = err("layernorm", json!({"x": [[1.0, "two"]]}));
    assert_eq!(e.field(), "x");
    assert!(e.to_string().contains("x[0][1]"), "{e}");
    assert_eq!(err("layernorm", json!({"x": [[1.0, null]]})).field(), "x");
    assert_eq!(err("layernorm", json!({"x": [[1.0, [2.0]]]})).field(), "x");
}

#[test]
fn wrong_rank_is_rejected() {
    assert_eq!(err("batchnorm", json!({"x": [1.0, 2.0]})).field(), "x");
}

#[test]
fn unknown_mode_names_the_field() {
    let e = err(
        "batchnorm",
        json!({"x": [[1.0], [2.0]], "mode": "training"}),
    );
    assert_eq!(e.field(), "mode");
    assert!(e.to_string().contains("training"), "{e}");
}

#[test]
fn unknown_variant_names_the_field() {
    assert_eq!(
        err("dropout", json!({"x": [1.0], "variant": "alpha"})).field(),
        "variant"
    );
}

#[test]
fn unknown_activation_names_the_field() {
    let e = err(
        "gnn",
        json!({"a": [[0.0]], "x": [[1.0]], "w": [[1.0]], "activation": "gelu"}),
    );
    assert_eq!(e.field(), "activation");
    let e = err(
        "gcn",
        json!({"a": [[0.0]], "x": [[1.0]], "alpha": [1.0], "laplacian": "normalized"}),
    );
    assert_eq!(e.field(), "laplacian");
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    assert_eq!(
        err("dropout", json!({"x": [1.0], "rate": 0.5})).field(),
        "rate"
    );
}

#[test]
fn missing_fields_are_named() {
    assert_eq!(err("gnn", json!({"a": [[0.0]], "x": [[1.0]]})).field(), "w");
}

#[test]
fn wrongly_typed_scalars_are_named() {
    assert_eq!(
        err("dropout", json!({"x": [1.0], "p": "half"})).field(),
        "p"
    );
    assert_eq!(
        err("stability", json!({"w": [[1.0]], "steps": -3})).field(),
        "steps"
    );
}

#[test]
fn non_square_adjacency_is_rejected() {
    let e = err(
        "gnn",
        json!({"a": [[0.0, 1.0]], "x": [[1.0]], "w": [[1.0]]}),
    );
    assert_eq!(e.field(), "a");
}

#[test]
fn asymmetric_adjacency_is_rejected() {
    let e = err(
        "gcn",
        json!({"a": [[0.0, 1.0], [0.0, 0.0]], "x": [[1.0], [1.0]], "alpha": [1.0]}),
    );
    assert_eq!(e.field(), "a");
    assert!(e.to_string().contains("symmetric"), "{e}");
}

#[test]
fn negative_adjacency_is_rejected() {
    let e = err(
        "smoothing",
        json!({"a": [[0.0, -1.0], [-1.0, 0.0]], "x": [[1.0], [2.0]]}),
    );
    assert_eq!(e.field(), "a");
    assert!(e.to_string().contains("non-negative"), "{e}");
}

#[test]
fn step_counts_over_the_cap_are_rejected_naming_field_and_cap() {
    let limits = LayerLimits {
        max_steps: 10,
        ..LayerLimits::default()
    };
    let e = run_with("stability", &json!({"w": [[1.0]], "steps": 11}), &limits).unwrap_err();
    assert_eq!(e.field(), "steps");
    assert!(
        e.to_string().contains("10") && e.to_string().contains("max_steps"),
        "{e}"
    );
    let e = run_with(
        "gcn",
        &json!({"a": [[0.0]], "x": [[1.0]], "alpha": vec![1.0; 12]}),
        &limits,
    )
    .unwrap_err();
    assert_eq!(e.field(), "alpha");
}

#[test]
fn element_counts_over_the_cap_are_rejected_naming_field_and_cap() {
    let limits = LayerLimits {
        max_elements: 100,
        ..LayerLimits::default()
    };
    let e = run_with("dropout", &json!({"x": vec![vec![1.0; 11]; 10]}), &limits).unwrap_err();
    assert_eq!(e.field(), "x");
    assert!(
        e.to_string().contains("100") && e.to_string().contains("max_elements"),
        "{e}"
    );
}

#[test]
fn work_over_the_cap_is_rejected() {
    let limits = LayerLimits {
        max_work: 1000,
        ..LayerLimits::default()
    };
    let e = run_with(
        "stability",
        &json!({"w": eye(20, 1.0), "steps": 10}),
        &limits,
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_work"), "{e}");
}

#[test]
fn malformed_json_is_a_body_error() {
    let e = layers::parse_request::<layers::DropoutRequest>(b"{not json").unwrap_err();
    assert_eq!(e.field(), "body");
}

#[test]
fn odd_inputs_never_panic() {
    let odd = [
        json!({}),
        json!({"x": []}),
        json!({"x": [[]]}),
        json!({"x": [[], []]}),
        json!({"x": 5}),
        json!({"x": [[[[[[[[[[1]]]]]]]]]]}),
        json!({"x": [[1e308, -1e308]]}),
        json!({"a": [], "x": [], "w": [], "alpha": []}),
        json!({"a": [[]], "x": [[]], "w": [[]], "alpha": [[]]}),
        json!({"w": [], "steps": 1}),
        json!({"w": [[]], "steps": 1}),
        json!({"w": [[0.0]], "x": [0.0]}),
        json!({"w0": 1e300, "w": [1e300], "v": [[1e300]], "indices": [0, 0], "values": [1e300, 1e300]}),
        json!({"x": [[1.0]], "w": [[]], "b": [], "v": [], "c": []}),
        json!({"x": [], "w_ih": [], "w_hh": []}),
        json!({"a": [[0.0]], "x": [[1.0]], "steps": 0}),
    ];
    for layer in [
        "batchnorm",
        "layernorm",
        "dropout",
        "rnn",
        "lstm",
        "gcn",
        "gnn",
        "fm",
        "stability",
        "smoothing",
    ] {
        for body in &odd {
            let _ = run(layer, body.clone());
        }
    }
}

// ---- the OpenAPI document ----

/// `/openapi.json` as the service serves it.
fn openapi() -> Value {
    serde_json::to_value(fmrecall::api::layers_openapi()).expect("the document serialises")
}

/// Follows `$ref`s (and a `oneOf` wrapping a single schema, utoipa's way of adding a default or
/// `null` to a reference) down to a schema with content.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").expect("local ref");
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let non_null: Vec<_> = one.iter().filter(|s| s["type"] != "null").collect();
        if let [only] = non_null.as_slice() {
            return resolve(doc, only);
        }
    }
    schema
}

/// The layer each `/v1/layers/...` route runs, by the name `run` knows it by.
fn layer_of(path: &str) -> &str {
    match path.strip_prefix("/v1/layers/").expect("a layer route") {
        "rnn/stability" => "stability",
        "gnn/smoothing" => "smoothing",
        other => other,
    }
}

#[test]
fn every_layer_route_documents_its_request_and_response_fields() {
    let doc = openapi();
    let layer_paths: Vec<&String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| p.starts_with("/v1/layers/"))
        .collect();
    assert_eq!(layer_paths.len(), 10, "{layer_paths:?}");
    for path in layer_paths {
        let op = &doc["paths"][path]["post"];
        let request = resolve(
            &doc,
            &op["requestBody"]["content"]["application/json"]["schema"],
        );
        let response = resolve(
            &doc,
            &op["responses"]["200"]["content"]["application/json"]["schema"],
        );
        for (what, schema) in [("request", request), ("response", response)] {
            let props = schema["properties"].as_object();
            assert!(
                props.is_some_and(|p| !p.is_empty()),
                "{path}: {what} schema has no named properties: {schema}"
            );
        }
        assert_eq!(request["additionalProperties"], false, "{path}");
        let required: Vec<&str> = request["required"]
            .as_array()
            .map(|r| r.iter().map(|s| s.as_str().unwrap()).collect())
            .unwrap_or_default();
        let layer = layer_of(path);

        // The example is a body the layer accepts, and its answer has the documented fields.
        let example = request["example"].clone();
        let answer = ok(layer, example.clone());
        let documented = response["properties"].as_object().unwrap();
        for key in answer.as_object().unwrap().keys() {
            assert!(documented.contains_key(key), "{path}: undocumented {key}");
        }
        for key in response["required"].as_array().unwrap() {
            assert!(answer.get(key.as_str().unwrap()).is_some(), "{path}: {key}");
        }

        for (name, property) in request["properties"].as_object().unwrap() {
            let mut without = example.clone();
            without.as_object_mut().unwrap().remove(name);
            let parsed = run(layer, without.clone());
            if required.contains(&name.as_str()) {
                // A required field is one the parser cannot do without.
                let e = parsed.clone().expect_err(name);
                assert!(
                    matches!(e, LayerError::Parse { .. }) && e.field() == name,
                    "{path}: {name}: {e}"
                );
            } else {
                assert!(
                    parsed.is_ok(),
                    "{path}: {name} is documented as optional but the layer needs it: {parsed:?}"
                );
            }
            // A documented default is the value the layer uses when the field is left out.
            if let Some(default) = property.get("default") {
                assert!(!required.contains(&name.as_str()), "{path}: {name}");
                let mut explicit = without.clone();
                explicit[name] = default.clone();
                assert_eq!(
                    run(layer, explicit).ok(),
                    parsed.ok(),
                    "{path}: {name} defaults to something other than {default}"
                );
            }
        }
    }
}

#[test]
fn the_rnn_schema_names_its_weights_and_the_activations() {
    let doc = openapi();
    let schemas = &doc["components"]["schemas"];
    let rnn = &schemas["RnnRequest"];
    for field in [
        "x",
        "w",
        "b",
        "v",
        "c",
        "h0",
        "activation",
        "output_activation",
    ] {
        assert!(rnn["properties"][field].is_object(), "rnn lacks {field}");
    }
    assert_eq!(rnn["required"], json!(["x", "w", "b", "v", "c"]));
    assert_eq!(rnn["properties"]["activation"]["default"], "sigmoid");
    let activation = resolve(&doc, &rnn["properties"]["activation"]);
    assert_eq!(
        activation["enum"],
        json!(["identity", "relu", "sigmoid", "tanh"])
    );
    let w = &rnn["properties"]["w"];
    assert!(
        w["description"].as_str().unwrap().contains("[W_ih | W_hh]"),
        "{w}"
    );
    assert_eq!(resolve(&doc, w)["items"]["items"]["type"], "number");
    // The other layers' defaults, which differ from layer to layer.
    let default =
        |schema: &str, field: &str| schemas[schema]["properties"][field]["default"].clone();
    assert_eq!(default("GnnRequest", "activation"), "relu");
    assert_eq!(default("GcnRequest", "activation"), "identity");
    assert_eq!(default("GcnRequest", "laplacian"), "combinatorial");
    assert_eq!(
        resolve(&doc, &schemas["GcnRequest"]["properties"]["laplacian"])["enum"],
        json!(["combinatorial", "symmetric"])
    );
    // Outputs may hold "nan", "inf" and "-inf", so every number in a response allows them.
    assert_eq!(
        schemas["Num"]["anyOf"][1]["enum"],
        json!(["nan", "inf", "-inf"])
    );
}
