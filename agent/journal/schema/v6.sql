-- v6: where scope state and agent health are published (e.g. a hospital MQTT bus); set at start.

CREATE TABLE publish_routes (
    subject  TEXT NOT NULL CHECK (subject IN ('scope.state', 'health')),
    uplink   TEXT NOT NULL,
    PRIMARY KEY (subject, uplink)
);
