-- Users with their side features (JSON array of name:value strings).
CREATE TABLE users (
    id          TEXT    PRIMARY KEY,
    features    TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
