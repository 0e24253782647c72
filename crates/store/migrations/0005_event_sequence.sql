-- Every event gets the next number of one sequence, taken in the
-- transaction that writes it (so numbers follow commit order): the edge
-- reports the last number it applied, and a write answers once the edges
-- have applied its number. Events written before this migration carry 0.

CREATE TABLE event_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last BIGINT NOT NULL
);

INSERT INTO event_sequence (id, last) VALUES (1, 0);

ALTER TABLE outbox ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

CREATE INDEX outbox_by_seq ON outbox (seq);
