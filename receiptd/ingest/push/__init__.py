"""Push ingestion: the HTTP listener the provider pushes receipts and replies to
(``listener``), the pushed bodies' formats (``formats``) and the group commit that writes
concurrent requests in one transaction (``group_commit``)."""
