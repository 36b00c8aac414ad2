-- Jobs, small state documents. Times are unix seconds (REAL); JSON as TEXT.
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    workflow TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    inputs TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    front_door TEXT NOT NULL DEFAULT 'cli',
    user_ref TEXT,
    chat TEXT,
    client_key TEXT UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    error TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    times TEXT NOT NULL DEFAULT '{}',
    gpu TEXT,
    cluster TEXT,
    cost REAL,
    progress REAL,
    detail TEXT,
    lease_token TEXT,
    lease_expires_at REAL,
    worker TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX jobs_active ON jobs (seq) WHERE status IN ('queued', 'waking', 'running');
CREATE INDEX jobs_user ON jobs (user_ref, created_at);
CREATE INDEX jobs_finished ON jobs (finished_at);
CREATE TABLE state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
