-- A client transaction ID names a request only together with the request itself (the room,
-- the event type, the redacted event): the same ID in another room or endpoint is a new
-- request. Replaces the table of 008, whose key lacked the request.
DROP TABLE roomserver_transactions;
CREATE TABLE roomserver_transactions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    -- The request: room ID, event type and redacted event ID, joined by spaces.
    request TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id, request)
);
