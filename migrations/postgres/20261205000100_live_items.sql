-- Items written while serving: a deleted flag (the row stays, so every replica learns of the delete)
-- and a change log that replicas read forward from the last change they applied.
ALTER TABLE items ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
CREATE TABLE item_changes (
    seq      BIGSERIAL PRIMARY KEY,
    item_id  TEXT      NOT NULL
);
