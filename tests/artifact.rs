//! The model artifact: exact round trip, and refusal of damaged or foreign files.

mod common;

use common::synthetic_job;
use fmrecall::data::FeatureSet;
use fmrecall::fm::artifact::MODEL_FILE;
use fmrecall::fm::{ArtifactError, ModelArtifact};
use fmrecall::pipeline::run_train;

fn trained(dir: &std::path::Path) -> ModelArtifact {
    run_train(&synthetic_job(dir, 2, FeatureSet::Hybrid), &mut |_| {}).unwrap();
    ModelArtifact::load(dir).unwrap()
}

#[test]
fn an_artifact_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let a = trained(dir.path());
    let bytes = a.to_bytes();
    let b = ModelArtifact::from_bytes(&bytes, dir.path()).unwrap();
    assert_eq!(a.model, b.model);
    assert_eq!(b.to_bytes(), bytes);
    assert_eq!(a.meta.vocabulary, b.meta.vocabulary);
    assert_eq!(a.meta.items, b.meta.items);
    assert!(b.meta.metrics.is_some());
    assert_eq!(b.meta.training.history.len(), 2);
    // Only users with train interactions are known to the model, each with their seen items.
    assert_eq!(b.meta.users.len(), b.meta.seen.len());
    assert!(b.meta.seen.iter().all(|s| !s.is_empty()));
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = trained(dir.path()).to_bytes();
    for pos in [9, 30, bytes.len() / 2, bytes.len() - 40, bytes.len() - 1] {
        let mut damaged = bytes.clone();
        damaged[pos] ^= 0x10;
        let e = ModelArtifact::from_bytes(&damaged, dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                ArtifactError::Corrupted { .. } | ArtifactError::UnsupportedVersion { .. }
            ),
            "byte {pos}: {e}"
        );
    }
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = trained(dir.path()).to_bytes();
    for len in [0, 7, 12, 40, bytes.len() / 2, bytes.len() - 1] {
        let e = ModelArtifact::from_bytes(&bytes[..len], dir.path());
        assert!(e.is_err(), "{len} bytes loaded");
    }
}

#[test]
fn a_file_of_another_format_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MODEL_FILE);
    std::fs::write(&path, b"{\"not\": \"a model\"}").unwrap();
    let e = ModelArtifact::load(&path).unwrap_err().to_string();
    assert!(e.contains("not an fmrecall model file"), "{e}");

    let mut future = trained(dir.path()).to_bytes();
    future[8] = 99;
    let e = ModelArtifact::from_bytes(&future, &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("format version 99"), "{e}");
}

#[test]
fn writing_leaves_no_temporary_file_and_replaces_the_model_whole() {
    let dir = tempfile::tempdir().unwrap();
    let first = trained(dir.path());
    let second = trained(dir.path());
    assert_eq!(first.model, second.model, "same seed, same model");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    assert!(names.contains(&MODEL_FILE.to_string()));
}
