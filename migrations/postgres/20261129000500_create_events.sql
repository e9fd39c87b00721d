-- Interactions recorded for the next training run; the same (user, item, kind, time) is stored once.
CREATE TABLE events (
    id       BIGSERIAL PRIMARY KEY,
    user_id  TEXT    NOT NULL,
    item_id  TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    weight   DOUBLE PRECISION,
    ts       BIGINT  NOT NULL,
    UNIQUE (user_id, item_id, kind, ts)
);
