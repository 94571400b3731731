-- Users erased on request (DELETE /v1/users/{user}): a suppression list, keyed by a
-- digest of the user id (the id itself is not kept), so a second erasure and an
-- export after it answer "nothing held" rather than "unknown user".
CREATE TABLE erasures (
    app TEXT NOT NULL,
    user_digest TEXT NOT NULL,
    erased_at BIGINT NOT NULL,
    PRIMARY KEY (app, user_digest)
);
