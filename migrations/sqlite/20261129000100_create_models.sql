-- The model registry: every trained artifact, its figures, and which one serves.
CREATE TABLE models (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    version         TEXT    NOT NULL UNIQUE,
    created_at      TEXT    NOT NULL,
    registered_at   TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('candidate', 'active', 'retired')),
    params          TEXT    NOT NULL,
    metrics         TEXT    NOT NULL,
    artifact_path   TEXT    NOT NULL,
    sha256          TEXT    NOT NULL,
    activated_by    TEXT,
    activated_at    TEXT,
    activation_seq  INTEGER
);
