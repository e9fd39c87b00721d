-- At most one model is active, enforced by the database itself.
CREATE UNIQUE INDEX models_one_active ON models (status) WHERE status = 'active';
