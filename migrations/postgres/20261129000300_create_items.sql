-- The catalog: items with their side features (JSON array of name:value strings) and an active flag.
CREATE TABLE items (
    id          TEXT    PRIMARY KEY,
    title       TEXT,
    features    TEXT    NOT NULL,
    active      BIGINT  NOT NULL DEFAULT 1,
    updated_at  TEXT    NOT NULL
);
